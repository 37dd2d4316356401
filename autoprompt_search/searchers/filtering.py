"""Coarse-to-fine template filtering with a frozen model (``--searcher filter``).

LM-BFF (Gao et al. 2021) showed automatically chosen templates match hand-written ones, but it
fine-tunes the model once per candidate. Here the model stays frozen and compute goes only to the
candidates that survive cheap rounds (successive halving, Jamieson & Talwalkar 2016):

1. **Pool** (on a fresh search): the given templates, a template grammar (:mod:`grammar`; the
   built-in one for the task's fields by default), templates the model proposes itself (APE,
   :mod:`proposals`), crossed with the given label words and LM-BFF's automatically found ones
   (:func:`labels.find_label_words`). The given template × verbalizer pairs are scored on the
   selection split first, so the search never returns a prompt worse there than the manual one.
2. **Halving rungs**, one searcher step each: score the alive candidates on a slice of the
   training data, keep the top ``keep`` fraction (never fewer than ``finalists``), double the
   slice; the last rung uses every training example.
3. **Mutation rounds** (optional), one step each: edit the best survivors (:mod:`mutations`),
   score the children on all training examples, keep the best.
4. **Final**: the top ``finalists`` are scored on the selection (dev) split; the best one wins.

``coarse_dtype="bfloat16"`` scores the training rungs in bf16 (worth it only on hardware with bf16
matrix units); the selection split is always scored in the Evaluator's own precision (fp32 by
default). ``halving=False`` scores every candidate on every training example in one rung instead (the
ablation that shows what halving saves, in ``forward_passes`` of the history).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..data.tasks import Example
from ..errors import AutopromptError, BudgetError, TemplateError
from ..prompts.grammar import Grammar, builtin_grammar
from ..prompts.prompt import Prompt
from ..prompts.verbalizer import Verbalizer
from ..scoring.evaluator import Evaluator
from ..scoring.fluency import mean_log_likelihoods
from ..scoring.halving import best_first, halving_sizes
from ..scoring.metrics import decoded_score
from ..scoring.score_table import ScoreTable
from ..scoring.selection import CalibrateChoice, Combine, SelectBy, SelectionOptions, SelectOn
from .base import SearchContext, Searcher, register
from .candidates.mutations import mutants
from .candidates.proposals import propose_templates
from .config import positive
from .labels import find_label_words
from .pool import Spec
from .records import Step


@register
class FilterSearcher(SelectionOptions, Searcher):
    """Successive halving over a pool of (template, verbalizer) candidates, then a dev final.

    Options: ``templates``/``verbalizers`` the given candidates (always in the pool, scored on dev);
    ``grammar`` a template grammar to expand; ``builtin`` add the generic pool for the task's fields;
    ``label_words`` how many LM-BFF label-word sets to find (top ``label_top_k`` words per class) on
    the first template; ``generate`` how many instructions the model writes (APE) from
    ``generate_examples`` training examples; ``mutations`` children per round, ``mutation_rounds``
    rounds; ``first_slice`` training examples in the first rung; ``keep`` fraction kept per rung;
    ``max_examples`` training examples the rungs, mutations and label-word table use at most (a
    balanced random sample: with full data every survivor of the last rung would otherwise be
    scored on every training example; full data also wants ``select_on="dev"``, a held-apart slice);
    ``finalists`` candidates scored on dev; ``halving``; ``coarse_dtype`` for the training rungs;
    ``fluency`` the weight of the template text's mean log-likelihood (:mod:`fluency`) added to the
    training scores that rank candidates and mutations; ``rank_references`` (generation) how many
    references of each training input the rungs score, the first ones (default all): a rung ranks
    templates by the mean per-reference likelihood, which two of E2E's ~8 references estimate at
    about a third of the passes. The selection options (``select_by`` …
    ``guard``) are :class:`selection.SelectionPolicy`'s; ``ensemble: k`` returns the top k (default 5).
    """

    name = "filter"

    def __init__(
        self,
        *,
        templates: Sequence[str] = (),
        verbalizers: Sequence[Mapping[str, Any] | None] = (),
        grammar: str | None = None,
        builtin: bool = True,
        label_words: int = 0,
        label_top_k: int = 10,
        generate: int = 0,
        generate_examples: int = 8,
        mutations: int = 0,
        mutation_rounds: int = 0,
        first_slice: int = 8,
        max_examples: int = 512,
        keep: float = 0.5,
        finalists: int = 4,
        halving: bool = True,
        coarse_dtype: str | None = None,
        fluency: float = 0.0,
        rank_references: int | None = None,
        select_by: SelectBy = "logloss",
        select_on: SelectOn = "all",
        calibrate: CalibrateChoice = "choose",
        ensemble: int = 5,
        combine: Combine = "mean",
        guard: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.set_selection(select_by=select_by, select_on=select_on, calibrate=calibrate, ensemble=ensemble,
                           combine=combine, guard=guard)
        positive(self.name, finalists=finalists, first_slice=first_slice, label_top_k=label_top_k,
                 max_examples=max_examples, rank_references=rank_references)
        self.templates, self.verbalizers = list(templates), list(verbalizers)
        self.grammar, self.builtin = grammar, builtin
        self.label_words, self.label_top_k = label_words, label_top_k
        self.generate, self.generate_examples = generate, generate_examples
        self.mutations, self.mutation_rounds = mutations, mutation_rounds
        self.first_slice, self.keep, self.finalists, self.halving = first_slice, keep, finalists, halving
        self.max_examples = max_examples
        self.coarse_dtype, self.fluency, self.rank_references = coarse_dtype, fluency, rank_references
        self._pool: list[Spec] = []
        self._alive: list[int] = []
        self._train_score: dict[int, float] = {}
        self._dev: dict[int, float] = {}
        self._order: list[int] = []  # training examples in the fixed random order the slices take
        self._rung = 0
        self._bank: list[str] = []
        self._rows: dict[int, np.ndarray] = {}  # class scores (E, L) on the selection split, for the final pick
        self._decoded: dict[int, dict[str, float]] = {}  # generation: decoded dev metrics (not checkpointed)


    # --- searcher protocol ---------------------------------------------------------------------
    def start(self, ctx: SearchContext) -> None:
        if not 0 < self.keep < 1 or self.first_slice < 1 or self.finalists < 1:
            raise BudgetError(f"filter needs 0 < keep < 1, first_slice >= 1 and finalists >= 1; got keep={self.keep}, "
                              f"first_slice={self.first_slice}, finalists={self.finalists}: e.g. 0.5, 8, 4")
        self._order = _balanced_order(ctx.train, ctx.rng.permutation(len(ctx.train)), ctx.task.kind)
        anchors, self._pool = self._build_pool(ctx)
        self._alive = list(range(len(self._pool)))
        self._dev = dict(zip(anchors, self._select_scores(ctx, anchors), strict=True))

    def step(self, ctx: SearchContext) -> Step | None:
        sizes = self._sizes(self._n_train(ctx))
        if self._rung < len(sizes) and len(self._alive) <= self.finalists:
            if not self.mutation_rounds and all(i in self._dev for i in self._alive):
                self._rung = len(sizes)  # every candidate reaches the final and is scored there already
            else:
                self._rung = max(self._rung, len(sizes) - 1)  # no rung may cut below ``finalists``
        if self._rung < len(sizes):
            return self._halving_rung(ctx, sizes[self._rung], last=self._rung == len(sizes) - 1)
        if self._rung < len(sizes) + self.mutation_rounds:
            return self._mutation_round(ctx)
        if self._rung == len(sizes) + self.mutation_rounds:
            return self._final(ctx)
        return None

    @property
    def best(self) -> tuple[Prompt, float]:
        index = self._best_index()
        return self._prompt(index), self._dev.get(index, float("-inf"))

    def best_metrics(self) -> dict[str, float] | None:
        return self._decoded.get(self._best_index())

    def _best_index(self) -> int:
        """The candidate with the best selection score (the first one before any is scored)."""
        return best_first(list(self._dev), list(self._dev.values()))[0] if self._dev else 0

    def final_candidates(self) -> list[Prompt]:
        return [self._prompt(i) for i in self._final_indices()] or [self.best[0]]

    def final_rows(self) -> list[np.ndarray | None] | None:
        return [self._rows.get(i) for i in self._final_indices()] or None

    def _final_indices(self) -> list[int]:
        """The best ``max(finalists, ensemble)`` of the dev-scored and alive candidates (dev score where
        there is one, else training score — the same examples when ``select_on="all"``)."""
        pool = list(dict.fromkeys([*self._dev, *self._alive]))
        scores = [self._dev.get(i, self._train_score.get(i, float("-inf"))) for i in pool]
        return best_first(pool, scores)[: max(self.finalists, self.ensemble)]

    def final_is_redundant(self, ctx: SearchContext) -> bool:
        """Whether the next step is the final on the selection split and the last rung scored every
        survivor on exactly those examples already (``select_on="all"``, no ``max_examples`` cut)."""
        n = self._n_train(ctx)
        return self._rung == len(self._sizes(n)) + self.mutation_rounds and _is_selection_split(ctx, n)

    def reference(self) -> Prompt | None:
        """The first given template with the first given label words (the first anchor)."""
        return self._prompt(0) if self._pool else None

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"pool": [list(spec) for spec in self._pool], "alive": self._alive, "order": self._order,
                "train_score": [[i, s] for i, s in self._train_score.items()],
                "dev": [[i, s] for i, s in self._dev.items()], "rung": self._rung, "bank": self._bank}, {
                f"rows.{i}": torch.from_numpy(rows) for i, rows in self._rows.items()}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor], ctx: SearchContext) -> None:
        self._pool = [(str(t), v) for t, v in state["pool"]]
        self._alive = [int(i) for i in state["alive"]]
        self._order = [int(i) for i in state["order"]]
        self._train_score = {int(i): float(s) for i, s in state["train_score"]}
        self._dev = {int(i): float(s) for i, s in state["dev"]}
        self._rung = int(state["rung"])
        self._bank = [str(p) for p in state["bank"]]
        self._rows = {int(k[5:]): v.numpy() for k, v in tensors.items() if k.startswith("rows.")}

    # --- the three kinds of step ---------------------------------------------------------------
    def _halving_rung(self, ctx: SearchContext, n: int, *, last: bool) -> Step:
        scores = self._train_scores(ctx, self._alive, n)
        ranked = best_first(self._alive, scores)
        kept = ranked if last else ranked[: max(self.finalists, math.ceil(len(ranked) * self.keep))]
        note = f"rung {self._rung}: {len(self._alive)} candidates on {n} training examples, kept {len(kept)}"
        report = self._report(self._alive, scores, examples=n)
        self._alive, self._rung = kept, self._rung + 1
        return Step(report, note=note)

    def _mutation_round(self, ctx: SearchContext) -> Step:
        parents = self._alive[: self.finalists]
        verbalizers = _unique([self._pool[i][1] for i in parents])  # children take the parents' label words
        children = mutants(_unique([self._pool[i][0] for i in parents]), self.mutations, rng=ctx.rng, lm=ctx.model,
                           bank=self._bank, exclude=[t for t, _ in self._pool])
        specs = [spec for spec in itertools.product(children, verbalizers) if self._usable(ctx, spec)]
        new = list(range(len(self._pool), len(self._pool) + len(specs)))
        self._pool.extend(specs)
        scores = self._train_scores(ctx, new, self._n_train(ctx)) if new else []
        pool = self._alive + new
        self._alive = best_first(pool, [self._train_score[i] for i in pool])[: max(self.finalists, len(self._alive))]
        self._rung += 1
        return Step(self._report(new, scores, examples=self._n_train(ctx)),
                    note=f"mutation: {len(new)} children of the top {len(parents)}, {len(self._alive)} alive")

    def _final(self, ctx: SearchContext) -> Step:
        finalists = [i for i in self._alive[: self.finalists] if i not in self._dev]
        scores = self._select_scores(ctx, finalists) if finalists else []
        self._dev.update(zip(finalists, scores, strict=True))
        self._rung += 1
        return Step(self._report(finalists, scores, examples=len(ctx.select)),
                    note=f"final: top {len(finalists)} on the selection split")

    # --- helpers -------------------------------------------------------------------------------
    def _n_train(self, ctx: SearchContext) -> int:
        """Training examples the rungs end on: all of them, up to ``max_examples``."""
        return min(len(ctx.train), self.max_examples)

    def _sizes(self, n_train: int) -> list[int]:
        if not self.halving:
            return [n_train]
        return halving_sizes(n_train, 1 + max(0, math.ceil(math.log2(n_train / self.first_slice))))

    def _train_scores(self, ctx: SearchContext, indices: list[int], n: int) -> list[float]:
        """Scores on the first ``n`` training examples (their first ``rank_references`` references), in
        ``coarse_dtype`` if one is set."""
        examples = [ctx.train[i] for i in self._order[:n]]
        if self.rank_references is not None:
            examples = [dataclasses.replace(e, references=e.references[: self.rank_references]) for e in examples]
        evaluator = ctx.evaluator
        if self.coarse_dtype not in (None, evaluator.dtype):
            evaluator = dataclasses.replace(evaluator, dtype=self.coarse_dtype)
        if _is_selection_split(ctx, n) and evaluator is ctx.evaluator:
            scores = self._select_scores(ctx, indices)  # select_on="all": the full rung is the selection split
        else:
            scores = self._scores(evaluator, ctx, indices, examples)
        if self.fluency:  # readable templates first among near-equals (FluentPrompt, Shi et al. 2022)
            texts = mean_log_likelihoods(ctx.model, [self._prompt(i) for i in indices])
            scores = [s + self.fluency * t for s, t in zip(scores, texts, strict=True)]
        if evaluator is not ctx.evaluator:  # the budget counts every forward pass, whichever precision ran it
            ctx.evaluator.forward_rows += evaluator.forward_rows
            ctx.evaluator.forward_tokens += evaluator.forward_tokens
        self._train_score.update(zip(indices, scores, strict=True))
        return scores

    def _select_scores(self, ctx: SearchContext, indices: list[int]) -> list[float]:
        """Scores on the selection split; each candidate's rows are kept (and reused) for the final pick."""
        if ctx.task.kind == "generation":  # likelihood ranked them on train; the few finalists are decoded on dev
            self._decoded.update((i, ctx.evaluator.evaluate(self._prompt(i), ctx.select, ctx.task, decode=True))
                                 for i in indices)
            return [decoded_score(self._decoded[i]) for i in indices]
        if ctx.task.kind != "classification":
            return self._scores(ctx.evaluator, ctx, indices, ctx.select)
        todo = [i for i in indices if i not in self._rows]
        if todo:
            table = ctx.evaluator.score([self._prompt(i) for i in todo], ctx.select, ctx.task)
            self._rows.update((i, table.scores[j]) for j, i in enumerate(todo))
        gold = np.array([ctx.task.labels.index(e.label) if e.label in ctx.task.labels else -1 for e in ctx.select])
        return [ctx.score(ScoreTable(ctx.task.kind, ctx.task.labels, gold, scores=self._rows[i][None]).metrics(0))
                for i in indices]

    def _scores(self, evaluator: Evaluator, ctx: SearchContext, indices: list[int],
                examples: Sequence[Example]) -> list[float]:
        table = evaluator.score([self._prompt(i) for i in indices], examples, ctx.task)
        return [ctx.score(table.metrics(j)) for j in range(len(indices))]

    def _prompt(self, index: int) -> Prompt:
        """The one place candidates become prompts (calibration/demonstrations ride on the Evaluator)."""
        template, verbalizer = self._pool[index]
        return Prompt.build(template, verbalizer)

    def _report(self, indices: list[int], scores: list[float], *, examples: int) -> dict[str, float]:
        """History scores: one entry per candidate (``#index template | words``) plus the slice size."""
        report: dict[str, float] = {"examples": float(examples), "candidates": float(len(indices))}
        for i, score in zip(indices, scores, strict=True):
            template, words = self._pool[i]
            label_words = " | " + "/".join("+".join(w) for w in words.values()) if words else ""
            report[f"#{i} {template}{label_words}"] = score
        return report

    def _usable(self, ctx: SearchContext, spec: Spec) -> bool:
        try:
            ctx.evaluator.encoder.validate(Prompt.build(*spec), ctx.task)
        except AutopromptError:
            return False
        return True

    def _build_pool(self, ctx: SearchContext) -> tuple[list[int], list[Spec]]:
        """Every usable (template, verbalizer) candidate, the given pairs (anchors) first."""
        task = ctx.task
        given = _unique([None if v is None else {k: list(w) for k, w in Verbalizer.parse(dict(v)).words.items()}
                         for v in self.verbalizers] or [None])
        grammars = [Grammar.parse(self.grammar)] if self.grammar else []
        if self.builtin:
            grammars.append(builtin_grammar(task.fields, task.kind))
        self._bank = list(dict.fromkeys(p for g in grammars for choice in g.choices for p in choice
                                        if p.strip() and "{" not in p and "[" not in p))
        templates = list(dict.fromkeys([*self.templates, *(t for g in grammars for t in g.expand())]))
        if not templates:
            raise TemplateError("the filter searcher has no candidates: pass --template, a grammar, or builtin=true")
        verbalizers = list(given)
        if self.label_words and task.kind == "classification":
            found = find_label_words(ctx, templates[0], top_k=self.label_top_k, max_examples=self.max_examples,
                                     count=self.label_words, allow_capitalized=True)
            verbalizers = _unique(verbalizers + [{k: [w] for k, w in v.items()} for v in found])
        if self.generate:
            templates += [t for t in self._proposals(ctx, templates[0], verbalizers[0]) if t not in templates]
        anchors = _unique([(t, v) for t in self.templates or templates[:1] for v in given])
        for spec in anchors:  # a bad given template is the user's to fix, not to skip
            ctx.evaluator.encoder.validate(Prompt.build(*spec), task)
        rest = [(t, v) for t in templates for v in verbalizers if (t, v) not in anchors]
        return list(range(len(anchors))), anchors + [spec for spec in rest if self._usable(ctx, spec)]

    def _proposals(self, ctx: SearchContext, base: str, verbalizer: dict[str, list[str]] | None) -> list[str]:
        """APE: templates ``instruction\\n<base>`` from the model's own instructions."""
        if ctx.task.kind != "classification":
            words = {str(e.label): str(e.label) for e in ctx.train}
        else:
            words = {label: (verbalizer or {}).get(label, [label])[0] for label in ctx.task.labels}
        shown = [ctx.train[i] for i in self._order[: self.generate_examples]]
        return propose_templates(ctx.model, shown, words, ctx.task.fields, base, samples=self.generate,
                                 seed=self.seed)


def _is_selection_split(ctx: SearchContext, n: int) -> bool:
    """Whether the first ``n`` training examples are the whole selection split (``select_on="all"``)."""
    return ctx.train is ctx.select and n == len(ctx.train)


def _balanced_order(train: Sequence[Example], permutation: np.ndarray, kind: str) -> list[int]:
    """Training examples in random order, classes taking turns (classification), so every slice is balanced."""
    order = [int(i) for i in permutation]
    if kind != "classification":
        return order
    by_label: dict[str | None, list[int]] = {}
    for i in order:
        by_label.setdefault(train[i].label, []).append(i)
    turns = itertools.zip_longest(*by_label.values())
    return [i for turn in turns for i in turn if i is not None]


def _unique(items: list) -> list:
    """``items`` without repeats, in order (they may hold dicts, so no set)."""
    return [s for n, s in enumerate(items) if s not in items[:n]]
