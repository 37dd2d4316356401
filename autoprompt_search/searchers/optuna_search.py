"""Optuna searcher: TPE over a template grammar's choice points and the label words, pruned by rungs.

Each step is one trial. The sampler — multivariate TPE (Bergstra et al., 2011; Falkner et al.,
2018), seeded afresh for every trial from the run's checkpointed RNG, so a resumed run draws what
an uninterrupted one would — picks an alternative at every choice point of the template grammar(s)
and one word per class (or one whole verbalizer). The Evaluator scores that prompt on a growing,
shuffled slice of the selection split (``n/2**(rungs-1)``, …, ``n``); every rung goes to the pruner
(``trial.report`` + ``trial.should_prune``), by default Optuna's successive-halving pruner with one
rung per slice, so a poor prompt stops after a few examples (Jamieson & Talwalkar, 2016).

The study lives in ``storage``: in memory (default), a SQLite file, or a PostgreSQL URL that several
workers share — each asks the storage for a trial and tells the result back, and ``best`` is the
study's best trial, whichever worker ran it. The worker that creates the study writes the search
space into it; workers joining later search that same space. Resume: an in-memory study is
checkpointed as its trials and replayed into a fresh one; a stored study is reopened (the trial
this worker left running when it was killed is marked failed).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState

from ..errors import StudyError, TemplateError, VerbalizerError
from ..prompts.grammar import Grammar, builtin_grammar
from ..prompts.prompt import Prompt
from ..scoring.halving import halving_sizes
from ..scoring.score_table import ScoreTable
from ..scoring.selection import CalibrateChoice, Combine, SelectBy, SelectionOptions, SelectOn, top_indices
from .base import SearchContext, Searcher, register
from .config import positive
from .labels import candidate_words, sample_examples
from .records import Step
from .studies import best_trial, open_study, storage_url, tpe_sampler, trial_from_json, trial_to_json

#: Candidate label words and the rung slices come from this fixed seed, not the run's, so that
#: workers with different seeds that join one study agree on its space and compare equal slices.
SHARED_SEED = 0


@dataclass
class Space:
    """The search space as plain data (stored in the study and the checkpoint).

    ``templates`` are grammar sources; classification tasks choose either one word per class from
    ``words[c]`` or one of ``verbalizers`` whole; fact tasks have neither.
    """

    templates: list[str]
    labels: list[str] = field(default_factory=list)
    words: list[list[str]] | None = None
    verbalizers: list[dict[str, Any]] | None = None

    @cached_property
    def grammars(self) -> list[Grammar]:
        return [Grammar.parse(t) for t in self.templates]

    def distributions(self) -> dict[str, BaseDistribution]:
        """One categorical parameter per real choice (a choice with one option is no parameter)."""
        options: dict[str, Sequence[Any]] = {"template": range(len(self.templates))}
        for k, grammar in enumerate(self.grammars):
            options.update({f"t{k}.c{i}": range(len(alts)) for i, alts in enumerate(grammar.choices)})
        if self.words is not None:
            options.update({f"word[{label}]": words for label, words in zip(self.labels, self.words, strict=True)})
        elif self.verbalizers:
            options["verbalizer"] = range(len(self.verbalizers))
        return {name: CategoricalDistribution(list(values)) for name, values in options.items() if len(values) > 1}

    def candidate(self, params: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """The (template, verbalizer) that ``params`` picks; a missing parameter means its only option."""
        k = params.get("template", 0)
        grammar = self.grammars[k]
        template = grammar.render([params.get(f"t{k}.c{i}", 0) for i in range(len(grammar.choices))])
        if self.words is not None:
            return template, {label: params.get(f"word[{label}]", words[0])
                              for label, words in zip(self.labels, self.words, strict=True)}
        return template, self.verbalizers[params.get("verbalizer", 0)] if self.verbalizers else None


@register
class OptunaSearcher(SelectionOptions, Searcher):
    """TPE over template choices and label words; one trial per step; rungs pruned by successive halving.

    ``templates``: grammars (``<<a|b>>`` choice points; plain templates are grammars without any);
    by default the built-in grammar for the task's fields. ``verbalizers``: whole label → word(s)
    mappings to choose among. ``label_top_k``: per class, choose a word among the given ones plus
    the ``label_top_k`` best of LM-BFF's label-word search on ``label_examples`` training examples
    (default: 8 when no verbalizer is given, else 0). ``trials`` this worker runs; ``rungs`` slices
    per trial; ``pruner``: ``halving``, ``median`` or ``none``; ``startup_trials`` random trials
    before TPE; ``storage``: None (memory), a SQLite path or any SQLAlchemy URL; ``study`` its name.
    The selection options (``select_by`` … ``guard``) are :class:`selection.SelectionPolicy`'s; the
    final pick sees the study's best ``max(FINALISTS, ensemble)`` complete trials.

    When templates are given, a new study's first trial is the given prompt (the first alternative of
    every choice, the first given words; Optuna's ``enqueue_trial``): it is scored in full like any
    trial and competes in the final pick, so a study whose samples all fall short of the prompt the
    user wrote returns that prompt rather than the best of the worse ones.
    """

    FINALISTS = 4

    name = "optuna"

    def __init__(
        self,
        *,
        templates: Sequence[str] | None = None,
        verbalizers: Sequence[Mapping[str, Any] | str | None] | None = None,
        label_top_k: int | None = None,
        label_examples: int = 64,
        trials: int = 30,
        rungs: int = 3,
        pruner: Literal["halving", "median", "none"] = "halving",
        startup_trials: int = 8,
        storage: str | None = None,
        study: str = "autoprompt-optuna",
        select_by: SelectBy = "logloss",
        select_on: SelectOn = "dev",
        calibrate: CalibrateChoice = "choose",
        ensemble: int = 5,
        combine: Combine = "mean",
        guard: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.set_selection(select_by=select_by, select_on=select_on, calibrate=calibrate, ensemble=ensemble,
                           combine=combine, guard=guard)
        positive(self.name, trials=trials, rungs=rungs, label_examples=label_examples)
        self.templates = list(templates or [])
        self.verbalizers = [json.loads(v) if isinstance(v, str) else dict(v) for v in verbalizers or [] if v]
        self.label_top_k = label_top_k
        self.label_examples, self.trials, self.rungs = label_examples, trials, rungs
        self.pruner, self.startup_trials = pruner, startup_trials
        self.storage, self.study = storage, study
        self._study: optuna.Study | None = None
        self._space: Space | None = None
        self._order: list[int] = []  # the selection split, shuffled; rung r scores a prefix of it
        self._trials = 0  # trials this worker ran
        self._worker = ""


    def expected_steps(self) -> int:
        return self.trials

    # --- searcher protocol ---------------------------------------------------------------------
    def start(self, ctx: SearchContext) -> None:
        self._check_options()
        self._worker = uuid.uuid4().hex
        self._open(ctx)
        stored = self._study.user_attrs.get("space")
        if stored is None:
            self._space = self._build_space(ctx)
            self._study.set_user_attr("space", asdict(self._space))
        else:
            self._space = Space(**stored)
        if self.templates and not self._study.get_trials(deepcopy=False):  # trial 0: the given prompt
            self._study.enqueue_trial({name: d.choices[0] for name, d in self._space.distributions().items()})

    def step(self, ctx: SearchContext) -> Step | None:
        if self._trials >= self.trials:
            return None
        self._study.sampler = self._sampler(int(ctx.rng.integers(2**31)))
        trial = self._study.ask(self._space.distributions())
        template, verbalizer = self._space.candidate(trial.params)
        for key, value in (("worker", self._worker), ("template", template), ("verbalizer", verbalizer)):
            trial.set_user_attr(key, value)
        twin = self._twin(template, verbalizer, trial.number)
        if twin is not None:  # the same prompt was scored before: its rungs and outcome, without forward passes
            for n, value in sorted(twin.intermediate_values.items()):
                trial.report(value, n)
            state, score, note = twin.state, twin.value, f"repeat of trial {twin.number}"
        else:
            try:
                state, score, note = self._score(ctx, trial, Prompt.build(template, verbalizer))
            except (TemplateError, VerbalizerError) as error:
                trial.set_user_attr("error", str(error))
                state, score, note = TrialState.FAIL, None, f"failed: {error}"
        self._study.tell(trial, score if state == TrialState.COMPLETE else None, state=state)
        self._trials += 1
        shown = {} if score is None else {f"trial_{trial.number}": float(score)}
        return Step(shown, note=f"trial {trial.number} {state.name.lower()}: {note} | {template!r} {verbalizer}")

    @property
    def best(self) -> tuple[Prompt, float]:
        trial = best_trial(self._study, key="template") if self._study is not None else None
        if trial is None:  # nothing finished yet: the first candidate, unscored
            return Prompt.build(*self._space.candidate({})), float("-inf")
        return Prompt.build(trial.user_attrs["template"], trial.user_attrs["verbalizer"]), float(trial.value)

    def final_candidates(self) -> list[Prompt]:
        complete = self._study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if self._study else []
        ranked = [complete[i] for i in top_indices([t.value for t in complete], len(complete))]
        prompts = list(dict.fromkeys((t.user_attrs["template"], json.dumps(t.user_attrs["verbalizer"]))
                                     for t in ranked))[: max(self.FINALISTS, self.ensemble)]
        return [Prompt.build(t, json.loads(v)) for t, v in prompts] or [self.best[0]]

    def reference(self) -> Prompt | None:
        """The first alternative of every choice with the first given words, when templates were given."""
        return Prompt.build(*self._space.candidate({})) if self.templates and self._space else None

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        state: dict[str, Any] = {"space": asdict(self._space), "trials_run": self._trials, "worker": self._worker}
        if storage_url(self.storage) is None:  # in memory: the checkpoint is the study
            state["study"] = [trial_to_json(t) for t in self._study.get_trials(deepcopy=False)]
        return state, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor], ctx: SearchContext) -> None:
        self._check_options()
        self._space = Space(**state["space"])
        self._trials, self._worker = int(state["trials_run"]), str(state["worker"])
        self._open(ctx)
        if storage_url(self.storage) is None:
            for trial in state["study"]:
                self._study.add_trial(trial_from_json(trial))
            self._study.set_user_attr("space", state["space"])
            return
        for trial in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get("worker") == self._worker:  # the trial the kill interrupted
                self._study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)

    # --- helpers -------------------------------------------------------------------------------
    def _check_options(self) -> None:
        if self.pruner not in ("halving", "median", "none"):
            raise StudyError(f"unknown pruner {self.pruner!r} for the optuna searcher: use halving, median or none")

    def _open(self, ctx: SearchContext) -> None:
        self._order = [int(i) for i in np.random.default_rng(SHARED_SEED).permutation(len(ctx.select))]
        first = halving_sizes(len(ctx.select), self.rungs)[0]
        pruner = {"halving": optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=2),
                  "median": optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials),
                  "none": optuna.pruners.NopPruner()}[self.pruner]
        self._study = open_study(self.storage, self.study, sampler=self._sampler(self.seed), pruner=pruner)

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return tpe_sampler(seed, self.startup_trials)

    def _build_space(self, ctx: SearchContext) -> Space:
        task = ctx.task
        templates = self.templates or [builtin_grammar(task.fields, task.kind).source]
        space = Space(templates, list(task.labels))
        _ = space.grammars  # parse now: a bad grammar is refused before any trial
        if task.kind != "classification":
            return space
        top_k = self.label_top_k if self.label_top_k is not None else (0 if self.verbalizers else 8)
        if top_k == 0:
            if not self.verbalizers:
                raise VerbalizerError("the optuna searcher needs label words: give --verbalizer, or label_top_k > 0 "
                                      "in --config to search them")
            space.verbalizers = self.verbalizers
            return space
        examples = sample_examples(ctx.train, self.label_examples, np.random.default_rng(SHARED_SEED))
        found = candidate_words(ctx, space.grammars[0].render([0] * len(space.grammars[0].choices)), examples,
                                top_k=top_k).words(ctx.model.decode)
        space.words = _disjoint_words(task.labels, self.verbalizers, found)
        return space

    def _score(self, ctx: SearchContext, trial: optuna.Trial, prompt: Prompt) -> tuple[TrialState, float, str]:
        """Score ``prompt`` rung by rung, reporting each to the pruner; stop when it prunes."""
        examples = [ctx.select[i] for i in self._order]
        tables: list[ScoreTable] = []
        done = 0
        for n in sorted(set(halving_sizes(len(examples), self.rungs))):
            tables.append(ctx.evaluator.score([prompt], examples[done:n], ctx.task))
            done = n
            score = ctx.score(ScoreTable.concat(tables).metrics(0))
            trial.report(score, n)
            if n < len(examples) and trial.should_prune():
                return TrialState.PRUNED, score, f"pruned at {n}/{len(examples)} examples"
        return TrialState.COMPLETE, score, f"{score:.4f} on {len(examples)} examples"

    def _twin(self, template: str, verbalizer: dict[str, Any] | None, number: int) -> optuna.trial.FrozenTrial | None:
        """An earlier finished trial of the same prompt (complete or pruned), if any."""
        for trial in self._study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            attrs = trial.user_attrs
            if trial.number < number and attrs.get("template") == template and attrs.get("verbalizer") == verbalizer:
                return trial
        return None


def _disjoint_words(
    labels: Sequence[str], verbalizers: Sequence[Mapping[str, Any]], found: Sequence[Sequence[str]]
) -> list[list[str]]:
    """Per class: the given words, then the found ones; a word another class already has is dropped.
    Every class's given words are reserved first, so a word label search finds for one class (say
    ``positive`` among the negative class's likely words) never takes it from the class it was given to."""
    given = [[w for v in verbalizers for w in _as_list(v.get(label, []))] for label in labels]
    reserved = {w for words in given for w in words}
    taken: set[str] = set()
    out: list[list[str]] = []
    for c, label in enumerate(labels):
        mine = [*given[c], *(w for w in found[c] if w not in reserved)]
        words = [w for w in dict.fromkeys(mine) if w not in taken]
        if not words:
            raise VerbalizerError(f"no candidate label word is left for class {label!r}: raise label_top_k or "
                                  "give words for it in --verbalizer")
        taken.update(words)
        out.append(words)
    return out


def _as_list(words: Any) -> list[str]:
    return [str(w) for w in words] if isinstance(words, list | tuple) else [str(words)]
