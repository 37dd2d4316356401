"""The one Evaluator every searcher shares: many (prompt, example) pairs → label-score tables.

All candidates × examples of a call go through :func:`batching.run_queries` together, never one
candidate at a time. Scores are true log-probabilities over the full vocabulary (log-softmax at
the answer positions only, which costs <1 % of a forward pass), so multi-token label words,
AutoPrompt's loss and P@1 all read off the same numbers.

Two options change what is scored, for every searcher at once (a prompt's own setting wins):
``calibration="contextual"`` divides out the label-word prior measured on content-free inputs
(:mod:`calibration`; their rows join the same batched passes, the prior is cached per prompt), and
``demos=Demonstrations(k=1)`` puts in-context demonstrations from the task's train split before
each query (:mod:`demonstrations`). :meth:`Evaluator.fitted` returns a prompt carrying both, with
the fitted prior, which is what a search saves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from . import metrics
from .batching import Normalize, Queries, Row, run_queries
from .calibration import Calibration, calibrate, content_free_values, fit_prior
from .demonstrations import Demonstrations, DemoSelector
from .encoding import Encoded, PromptEncoder, check_examples
from .errors import BudgetError, DataError, TemplateError
from .models.language_model import LanguageModel
from .prompt import Prompt
from .tasks import Example, Task

FactMatch = Literal["first-token", "greedy"]
_CACHE_LIMIT = 4096


@dataclass
class ScoreTable:
    """Scores of C prompts on E examples.

    Classification: ``scores`` (C, E, L) class log-probs (calibrated where calibration is on),
    ``gold`` (E,) label indices (-1 if none), ``p_cf`` (C, L) each prompt's calibration prior (NaN
    rows for uncalibrated prompts; None if none is calibrated).
    Fact tasks: ``rank`` (C, E) rank of the gold object's first token, ``gold_logprob`` (C, E) the
    whole object's log-prob, ``greedy`` (C, E) whether greedy decoding yields the whole object.
    """

    kind: str
    labels: tuple[str, ...]
    gold: np.ndarray
    scores: np.ndarray | None = None
    rank: np.ndarray | None = None
    gold_logprob: np.ndarray | None = None
    greedy: np.ndarray | None = None
    fact_match: FactMatch = "first-token"
    p_cf: np.ndarray | None = None

    def metrics(self, candidate: int = 0) -> dict[str, float]:
        """Metrics of one prompt (row ``candidate``) over the labelled examples."""
        if self.kind == "classification":
            keep = self.gold >= 0
            return metrics.classification_metrics(self.scores[candidate][keep], self.gold[keep])
        out = metrics.fact_metrics(self.rank[candidate], self.gold_logprob[candidate], self.greedy[candidate])
        if self.fact_match == "greedy":
            out["p_at_1"] = out["greedy_match"]
        return out

    @staticmethod
    def concat(parts: Sequence[ScoreTable]) -> ScoreTable:
        """Join tables of the same prompts over consecutive example chunks."""
        def cat(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays, axis=1)

        first = parts[0]
        return ScoreTable(first.kind, first.labels, np.concatenate([p.gold for p in parts]), scores=cat("scores"),
                          rank=cat("rank"), gold_logprob=cat("gold_logprob"), greedy=cat("greedy"),
                          fact_match=first.fact_match, p_cf=first.p_cf)

    def predictions(self, candidate: int = 0) -> list[str]:
        """Predicted labels of one prompt (classification only)."""
        return [self.labels[i] for i in self.scores[candidate].argmax(axis=1)]


@dataclass
class Ranking:
    """Result of :meth:`Evaluator.rank`: survivors best-first, their final scores, every rung."""

    order: list[int]
    scores: list[float]
    rungs: list[dict]


@dataclass
class Evaluator:
    """Batched scoring of prompts on examples with one model.

    ``dtype`` selects the scoring precision (fp32 is the reference; bf16 pays off only where the
    hardware has bf16 matrix units — measure it, see ``benchmarks/perf_evaluator.py``).
    ``candidate_ids`` restricts fact ranking to a vocabulary (e.g. LAMA's common vocab); by default
    the gold object competes with the whole vocabulary. ``reuse_prefix`` (causal LMs) runs a prefix
    shared by several candidates on the same example once. ``normalize="labels"`` scores label
    words by a softmax over the label words only (cheaper; classification only).
    ``chunk_pairs`` bounds memory: pairs are planned and scored that many at a time.
    ``calibration`` ("contextual" or a :class:`Calibration`) and ``demos`` (a
    :class:`Demonstrations`) apply to every prompt that does not carry its own.
    """

    model: LanguageModel
    dtype: str = "float32"
    batch_tokens: int | None = None
    candidate_ids: Sequence[int] | None = None
    fact_match: FactMatch = "first-token"
    reuse_prefix: bool = True
    normalize: Normalize = "vocab"
    chunk_pairs: int = 16384
    progress: bool = False
    calibration: Calibration | str | None = None
    demos: Demonstrations | None = None
    forward_rows: int = field(default=0, init=False)
    forward_tokens: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._lm = self.model.with_dtype(self.dtype)
        self.encoder = PromptEncoder(self.model)
        self.calibration = Calibration.coerce(self.calibration)
        self._priors: dict[tuple, np.ndarray] = {}  # prompt key → fitted p_cf (L,)
        self._selectors: dict[tuple, DemoSelector] = {}  # (pool id, config, per_class) → selector

    def settle(self, prompt: Prompt) -> Prompt:
        """The prompt with this Evaluator's calibration and demonstrations where it has none of its own."""
        return replace(prompt, calibration=prompt.calibration or self.calibration, demos=prompt.demos or self.demos)

    def fitted(self, prompt: Prompt, task: Task) -> Prompt:
        """The prompt exactly as it scores here on ``task``: settled, fitted to the task's labels, and
        with its calibration prior p_cf recorded — what a search saves, so it scores the same later."""
        prompt = self._prepare([prompt], task)[0]
        if prompt.calibration is None or prompt.calibration.fitted:
            return prompt
        table = self._score_chunk([prompt], [], task)
        return replace(prompt, calibration=prompt.calibration.with_prior(task.labels, table.p_cf[0]))

    def evaluate(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> dict[str, float]:
        """Metrics of one prompt on ``examples``."""
        return self.score([prompt], examples, task).metrics(0)

    def score(self, prompts: Sequence[Prompt], examples: Sequence[Example], task: Task) -> ScoreTable:
        """Score every prompt on every example in shared batched passes."""
        if not examples:
            raise DataError(f"no examples to score for task {task.name!r}: give a non-empty split")
        check_examples(examples, task)
        prompts = self._prepare(prompts, task)
        step = max(1, self.chunk_pairs // len(prompts))
        parts = [self._score_chunk(prompts, examples[i : i + step], task) for i in range(0, len(examples), step)]
        return parts[0] if len(parts) == 1 else ScoreTable.concat(parts)

    def _prepare(self, prompts: Sequence[Prompt], task: Task) -> list[Prompt]:
        prompts = [self.encoder.validate(self.settle(p), task) for p in prompts]
        if task.kind != "classification" and any(p.calibration for p in prompts):
            raise TemplateError(
                f"contextual calibration rescales the probabilities of a closed set of label words, but task "
                f"{task.name!r} is a fact task whose answer can be any word: score it without calibration"
            )
        return prompts

    def _score_chunk(self, prompts: Sequence[Prompt], examples: Sequence[Example], task: Task) -> ScoreTable:
        plan = _Plan(self.encoder, self.model.is_causal, self.model.mask_id)
        for c, prompt in enumerate(prompts):
            for e, example in enumerate(examples):
                plan.add(c, e, prompt, example, task, self._demos(prompt, example, task))
        priors = [self._prior(p, task) for p in prompts]
        for c, prompt in enumerate(prompts):  # content-free rows join the same passes
            if prompt.calibration is not None and priors[c] is None:
                for j, example in enumerate(self._content_free(prompt)):
                    plan.add(c, len(examples) + j, prompt, example, task, self._demos(prompt, example, task))
        cand = None if self.candidate_ids is None else torch.as_tensor(list(self.candidate_ids), device=self._lm.device)
        answers = run_queries(
            self._lm, plan.rows, plan.queries, [p.soft for p in prompts],
            groups=plan.groups if self.reuse_prefix else None, want_rank=task.kind == "fact",
            normalize=self.normalize, candidate_ids=cand, batch_tokens=self.batch_tokens, progress=self.progress,
        )
        self.forward_rows += len(plan.rows)
        self.forward_tokens += sum(len(r.ids) for r in plan.rows)
        if task.kind != "classification":
            return plan.fact_table(answers, len(prompts), examples, self.fact_match)
        raw = plan.class_scores(answers, prompts, len(task.labels))  # (C, examples + content-free, L)
        label_index = {label: i for i, label in enumerate(task.labels)}
        gold = np.array([label_index.get(str(x.label), -1) for x in examples], dtype=int)
        scores, p_cf = self._calibrated(raw, prompts, priors, len(examples), task)
        return ScoreTable("classification", task.labels, gold, scores=scores, p_cf=p_cf)

    # --- calibration and demonstrations ---------------------------------------------------------
    def _calibrated(self, raw: np.ndarray, prompts: Sequence[Prompt], priors: list[np.ndarray | None],
                    n_examples: int, task: Task) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores (C, E, L), calibrated for calibrated prompts, and their priors (C, L) (or None)."""
        scores = raw[:, :n_examples].copy()
        if not any(p.calibration for p in prompts):
            return scores, None
        p_cf = np.full((len(prompts), len(task.labels)), np.nan)
        for c, prompt in enumerate(prompts):
            if prompt.calibration is None:
                continue
            if priors[c] is None:
                n_free = len(prompt.calibration.content_free)
                priors[c] = fit_prior(raw[c, n_examples : n_examples + n_free])
                self._remember(self._priors, self._prior_key(prompt, task), priors[c])
            scores[c] = calibrate(scores[c], priors[c])
            p_cf[c] = priors[c]
        return scores, p_cf

    def _prior(self, prompt: Prompt, task: Task) -> np.ndarray | None:
        """The prompt's p_cf (L,) if recorded or already fitted here; None if it must be fitted."""
        if prompt.calibration is None:
            return None
        if prompt.calibration.fitted:
            return prompt.calibration.prior(task.labels)
        return self._priors.get(self._prior_key(prompt, task))

    def _prior_key(self, prompt: Prompt, task: Task) -> tuple:
        """What p_cf depends on: the prompt (soft vectors by content) and the demonstration pool."""
        soft = None if prompt.soft is None else hashlib.sha1(
            prompt.soft.detach().float().cpu().numpy().tobytes()).hexdigest()
        pool = id(task.split("train")) if prompt.demos else None
        verbalizer = json.dumps(prompt.verbalizer.to_json()) if prompt.verbalizer else None
        return (prompt.template.source, verbalizer, prompt.trigger_ids, soft, prompt.demos,
                prompt.calibration, self.model.name, pool)

    def _content_free(self, prompt: Prompt) -> list[Example]:
        """Zhao et al.'s content-free inputs: each string in every field of the template."""
        assert prompt.calibration is not None
        mask = None if self.model.is_causal else self.model.tokenizer.mask_token
        strings = content_free_values(prompt.calibration.content_free, mask)
        return [Example({name: text for name in prompt.template.fields}) for text in strings]

    def _demos(self, prompt: Prompt, example: Example, task: Task) -> list[Example]:
        """The demonstrations that go before ``example`` (none unless the prompt asks for them)."""
        if prompt.demos is None:
            return []
        if not task.has_split("train"):
            raise DataError(
                f"in-context demonstrations come from the task's train split, but task {task.name!r} has none "
                f"(splits: {sorted(k for k in task.splits if task.has_split(k))}): load a folder with a train "
                "file (train.tsv) or a file whose 'split' column marks train rows, or score without demonstrations"
            )
        pool = task.split("train")
        per_class = prompt.demos.per_class and task.kind == "classification"
        key = (id(pool), prompt.demos, per_class)
        if key not in self._selectors:
            self._remember(self._selectors, key, DemoSelector(pool, prompt.demos, per_class=per_class))
        return self._selectors[key].choose(example)

    def _remember(self, cache: dict, key: tuple, value: object) -> None:
        """Bounded caches; priors are keyed by pool ids that only the selectors keep alive, so both go."""
        if len(cache) >= _CACHE_LIMIT:
            self._priors.clear()
            self._selectors.clear()
        cache[key] = value

    def rank(
        self,
        prompts: Sequence[Prompt],
        examples: Sequence[Example],
        task: Task,
        *,
        keep: float = 0.5,
        rungs: int = 3,
    ) -> Ranking:
        """Successive halving: score all candidates on a slice, keep the top ``keep`` fraction,
        double the slice, repeat; the last rung uses every example.

        Most candidates are dropped after a few examples, so ranking C candidates costs far less
        than C full evaluations. Returns the survivors best-first and every rung's scores.
        """
        if not 0 < keep < 1 or rungs < 1:
            raise BudgetError(f"successive halving needs 0 < keep < 1 and rungs >= 1, got keep={keep}, rungs={rungs}: "
                              "e.g. keep=0.5, rungs=3")
        alive = list(range(len(prompts)))
        history: list[dict] = []
        for rung in range(rungs):
            n = len(examples) if rung == rungs - 1 else max(1, len(examples) >> (rungs - 1 - rung))
            table = self.score([prompts[i] for i in alive], examples[:n], task)
            scores = [metrics.selection_score(table.metrics(j), task.kind) for j in range(len(alive))]
            history.append({"rung": rung, "examples": n, "candidates": list(alive), "scores": scores})
            order = sorted(range(len(alive)), key=lambda j: (-scores[j], alive[j]))
            survivors = len(alive) if rung == rungs - 1 else max(1, int(np.ceil(len(alive) * keep)))
            alive = [alive[j] for j in order[:survivors]]
        return Ranking(alive, history[-1]["scores"], history)


class _Plan:
    """Rows and queries for a set of pairs, and how to fold query answers back into scores.

    Causal LM: one row holds the context; a word's first token is read at its last position, and a
    multi-token word gets one extra row (context + its tokens but the last) for the rest. Masked LM:
    one row per distinct word length, with that many mask tokens at the answer slot.
    """

    def __init__(self, encoder: PromptEncoder, is_causal: bool, mask_id: int | None) -> None:
        self.encoder, self.is_causal, self.mask_id = encoder, is_causal, mask_id
        self.rows: list[Row] = []
        self.groups: list[int] = []  # example index of each row: rows of one example may share a prefix
        self.queries = Queries([], [], [])
        self.words: list[list[list[list[int]]]] = []  # pair → label → word → query indices
        self.pairs: list[tuple[int, int]] = []  # pair → (candidate, slot: example or content-free input)

    def add(self, candidate: int, example_index: int, prompt: Prompt, example: Example, task: Task,
            demos: Sequence[Example] = ()) -> None:
        encoded = self.encoder.encode(prompt, example, demos)
        if task.kind == "classification":
            targets = self.encoder.label_word_ids(prompt, encoded)
        else:
            targets = [[self.encoder.word_ids(str(example.label), encoded.text_before)]]
        self._example = example_index
        self.pairs.append((candidate, example_index))
        self.words.append(self._causal(candidate, encoded, targets) if self.is_causal
                          else self._masked(candidate, encoded, targets))

    def _row(self, ids: tuple[int, ...], candidate: int, soft: list[tuple[int, int]]) -> int:
        self.rows.append(Row(ids, tuple((pos, candidate, k) for pos, k in soft)))
        self.groups.append(self._example)
        return len(self.rows) - 1

    def _causal(self, c: int, enc: Encoded, targets: list[list[tuple[int, ...]]]) -> list[list[list[int]]]:
        base = self._row(enc.before, c, list(enc.soft_before))
        last = len(enc.before) - 1
        out = []
        for words in targets:
            per_word = []
            for ids in words:
                q = [self.queries.add(base, last, ids[0])]
                if len(ids) > 1:
                    ext = self._row(enc.before + ids[:-1], c, list(enc.soft_before))
                    q += [self.queries.add(ext, last + j, t) for j, t in enumerate(ids) if j]
                per_word.append(q)
            out.append(per_word)
        return out

    def _masked(self, c: int, enc: Encoded, targets: list[list[tuple[int, ...]]]) -> list[list[list[int]]]:
        row_of_length: dict[int, int] = {}
        start = len(enc.before)
        out = []
        for words in targets:
            per_word = []
            for ids in words:
                m = len(ids)
                if m not in row_of_length:
                    soft = list(enc.soft_before) + [(start + m + off, k) for off, k in enc.soft_after]
                    row_of_length[m] = self._row(enc.before + (self.mask_id,) * m + enc.after, c, soft)
                per_word.append([self.queries.add(row_of_length[m], start + j, t) for j, t in enumerate(ids)])
            out.append(per_word)
        return out

    def class_scores(self, answers, prompts: Sequence[Prompt], n_labels: int) -> np.ndarray:
        """Class log-scores (C, S, L) of every planned (candidate, slot) pair."""
        lp = answers.logprob
        n_slots = 1 + max((slot for _, slot in self.pairs), default=-1)
        scores = np.full((len(prompts), n_slots, n_labels), np.nan)
        for (c, e), labels in zip(self.pairs, self.words, strict=True):
            reduce = np.mean if prompts[c].verbalizer.reduction == "mean" else np.sum
            for li, words in enumerate(labels):
                scores[c, e, li] = np.logaddexp.reduce([reduce(lp[q]) for q in words])
        return scores

    def fact_table(self, answers, n_c: int, examples: Sequence[Example], fact_match: FactMatch) -> ScoreTable:
        n_e = len(examples)
        first = np.array([w[0][0][0] for w in self.words])
        whole = np.array([answers.logprob[w[0][0]].sum() for w in self.words])
        greedy = np.array([bool(np.all(answers.rank[w[0][0]] == 1)) for w in self.words])
        shape = (n_c, n_e)
        return ScoreTable(
            "fact", (), np.zeros(n_e, dtype=int), rank=answers.rank[first].reshape(shape),
            gold_logprob=whole.reshape(shape), greedy=greedy.reshape(shape), fact_match=fact_match,
        )
