"""The Searcher interface and the one search loop every searcher shares.

A searcher implements four small methods, called in this order::

    start(ctx)            once, on a fresh search (never on resume)
    step(ctx) -> Step     repeatedly, until it returns None or the budget ends
    state_dict()          after every step, to checkpoint (JSON-able dict + tensors)
    load_state_dict(s)    instead of start() when resuming

and exposes ``best`` (the incumbent prompt and its selection score). The loop — budget, progress
bar, history, checkpoints, callbacks, final scoring and run-directory artifacts — lives here once,
so a new searcher is one small module (ARCHITECTURE.md, "Add a searcher").
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.tasks import Example, Task
from ..errors import AutopromptError, DataError, PromptFileError
from ..models.language_model import LanguageModel
from ..prompts.ensemble import EnsemblePrompt
from ..prompts.prompt import ModelSignature, Prompt
from ..scoring.evaluator import Evaluator
from ..scoring.fluency import perplexity
from ..scoring.selection import SelectBy, SelectionPolicy, SelectOn, selection_score
from .config import parameter_names, plain
from .final import Decision, final_selection
from .records import Budget, SearchResult, Step, StepRecord
from .run_dir import RunDir


@dataclass
class SearchContext:
    """What a step may use: the task, the model, the shared Evaluator, a seeded RNG, the examples
    to train on and to select on (never the test split), how candidates are scored (``by``), and
    the budget with what has been spent of it (a pipeline plans its stages by it)."""

    task: Task
    model: LanguageModel
    evaluator: Evaluator
    rng: np.random.Generator
    train: Sequence[Example]
    select: Sequence[Example]
    seed: int
    by: SelectBy = "logloss"
    budget: Budget = field(default_factory=lambda: Budget())
    spent: Callable[[], tuple[float, int]] = lambda: (0.0, 0)  # (seconds, forward passes) so far

    def signature(self) -> ModelSignature:
        return ModelSignature(self.model.name, self.model.vocab_size, self.model.hidden_size)

    def score(self, metrics: dict[str, float], tiebreak: str = "gold_logprob") -> float:
        """The selection score of one candidate's metrics (:func:`selection.selection_score`)."""
        return selection_score(metrics, self.task.kind, self.by, tiebreak)


class Searcher(ABC):
    """Base class: configuration in the constructor, all work in :meth:`search`."""

    name: ClassVar[str]
    #: How candidates are scored and where; searchers that take these options store them here.
    select_by: SelectBy = "logloss"
    select_on: SelectOn = "dev"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    # --- what a searcher implements -------------------------------------------------------------
    @abstractmethod
    def start(self, ctx: SearchContext) -> None:
        """Set up the initial state (called once, not on resume)."""

    @abstractmethod
    def step(self, ctx: SearchContext) -> Step | None:
        """Do one unit of work; return None when the search has nothing left to do."""

    @property
    @abstractmethod
    def best(self) -> tuple[Prompt, float]:
        """The incumbent prompt and its selection score."""

    @abstractmethod
    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """JSON-able state and named tensors, enough to resume exactly."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor], ctx: SearchContext) -> None:
        """Restore what :meth:`state_dict` returned."""

    def config(self) -> dict[str, Any]:
        """Constructor arguments as stored on ``self`` (see :mod:`.config`), for ``config.json``."""
        return {name: plain(getattr(self, name)) for name in parameter_names(type(self))}

    def expected_steps(self) -> int | None:
        """Steps the searcher plans to take on its own (for the progress bar), if known."""
        return None

    # --- the final pick (:mod:`final`), for searchers that take the selection options -----------
    def selection_policy(self) -> SelectionPolicy | None:
        """How the final pick is made; None: the incumbent ``best`` is the result."""
        return None

    def final_candidates(self) -> list[Prompt]:
        """The candidates of the final pick, best first (by default only the incumbent)."""
        return [self.best[0]]

    def reference(self) -> Prompt | None:
        """The given (manual) prompt the guard compares against, if the searcher has one."""
        return None

    def final_rows(self) -> list[np.ndarray | None] | None:
        """Class scores (E, L) on the selection split the searcher already has for each of
        :meth:`final_candidates` (None where it has none), so the final pick does not rescore them."""
        return None

    def best_metrics(self) -> dict[str, float] | None:
        """The incumbent's metrics on the selection split, when the searcher has them (a generation
        task's decoded ones too, if it decoded), so the result does not score them again."""
        return None

    def conclude(self, ctx: SearchContext) -> Decision:
        """The result of the search: the final pick by the searcher's policy, or the incumbent."""
        policy = self.selection_policy()
        if policy is None or not policy.final_stage or ctx.task.kind == "generation":  # generation: decoded on dev
            prompt, score = self.best
            return Decision(prompt, score, None, self.best_metrics())
        return final_selection(ctx.evaluator, ctx.task, ctx.select, self.final_candidates(), self.reference(),
                               policy, seed=self.seed, decode=ctx.model.decode, known=self.final_rows())

    # --- the loop -------------------------------------------------------------------------------
    def search(
        self,
        task: Task,
        model: LanguageModel,
        *,
        budget: Budget | None = None,
        evaluator: Evaluator | None = None,
        callbacks: Sequence[Callable[[StepRecord], None]] = (),
        run_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> SearchResult:
        """Run the search until the searcher finishes or the budget ends; return the best prompt."""
        budget = budget or Budget()
        evaluator = evaluator or Evaluator(model)
        select_split = "dev" if task.has_split("dev") else "train"
        if not task.has_split(select_split):
            raise DataError(
                f"task {task.name!r} has no train or dev split to search on (it has {sorted(task.splits)}), and a "
                "search never selects on test: give a folder with train/dev files (train.tsv, dev.tsv), or a file "
                "whose 'split' column marks train/dev rows (a single file without one is all test)"
            )
        train = task.split("train") if task.has_split("train") else task.split(select_split)
        select = task.split(select_split)
        if self.select_on == "all" and task.has_split("train") and select_split == "dev":
            # all labelled examples, for search and selection alike (Perez et al. 2021 keep none apart)
            train = select = [*train, *select]
            select_split = "train+dev"
        ctx = SearchContext(task, model, evaluator, np.random.default_rng(self.seed), train, select, self.seed,
                            self.select_by, budget)
        run = RunDir(run_dir) if run_dir is not None else None
        history: list[StepRecord] = []
        steps, spent, forward0 = 0, 0.0, evaluator.forward_rows
        clock = time.perf_counter()  # a fresh search's seconds include start()'s work
        checkpoint = run.load_checkpoint() if run and resume else None
        if checkpoint is not None:
            state, tensors = checkpoint
            run.check_same_search(self.name, self.config())
            try:
                ctx.rng.bit_generator.state = state["rng"]
                self.load_state_dict(state["searcher"], tensors, ctx)
                history = run.history(state["steps"])
            except AutopromptError:
                raise
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
                raise PromptFileError(
                    f"the checkpoint in {run.checkpoint} does not fit this {self.name!r} search "
                    f"({type(error).__name__}: {error}): start the search without --resume"
                ) from None
            steps, spent = state["steps"], state["seconds"]
            forward0 -= state["forward_passes"]
        else:
            if run:
                run.start(self.name, self.config(), task, model, budget)
            self.start(ctx)
        bar = tqdm(total=budget.iterations or self.expected_steps(), initial=steps, desc=self.name,
                   unit="step", disable=not progress)
        began = (clock if checkpoint is None else time.perf_counter()) - spent
        ctx.spent = lambda: (time.perf_counter() - began, evaluator.forward_rows - forward0)
        while not budget.exhausted(steps, evaluator.forward_rows - forward0, time.perf_counter() - began):
            report = self.step(ctx)
            if report is None:
                break
            steps += 1
            record = StepRecord(steps, self.best[1], report.scores, evaluator.forward_rows - forward0,
                                round(time.perf_counter() - began, 3), report.note)
            history.append(record)
            if run:
                state, tensors = self.state_dict()
                run.record(record, {"steps": steps, "seconds": record.seconds, "rng": ctx.rng.bit_generator.state,
                                    "forward_passes": record.forward_passes, "searcher": state}, tensors)
            for callback in callbacks:
                callback(record)
            bar.update(1)
            bar.set_postfix(best=f"{record.best_score:.4f}")
        bar.close()
        return self._finish(ctx, select_split, history, run)

    def _finish(
        self, ctx: SearchContext, select_split: str, history: list[StepRecord], run: RunDir | None
    ) -> SearchResult:
        decision = self.conclude(ctx)
        prompt, score, evidence = decision.prompt, decision.score, decision.evidence
        # The saved prompt carries the Evaluator's calibration (with its fitted prior) and demonstrations.
        prompt = ctx.evaluator.resolved(_finished(prompt, ctx), ctx.task)
        # the final pick scored its prompt on the selection split already (an ensemble's members too);
        # generation: the final prompt is decoded (BLEU, ROUGE-L); the search itself selected on likelihood
        dev_metrics = decision.metrics or ctx.evaluator.evaluate(prompt, ctx.select, ctx.task)
        if ctx.task.kind == "generation" and "bleu" not in dev_metrics:
            dev_metrics = {**dev_metrics, **ctx.evaluator.decoded_metrics(prompt, ctx.select, ctx.task)}
        test = ctx.task.split("test") if ctx.task.has_split("test") else None
        test_metrics = ctx.evaluator.evaluate(prompt, test, ctx.task, decode=True) if test is not None else None
        result = SearchResult(self.name, self.config(), self.seed, prompt, score, dev_metrics, test_metrics,
                              history, select_split, evidence)
        if run:
            run.finish(result, ctx.model.decode)
        return result


def _finished(prompt: Prompt | EnsemblePrompt, ctx: SearchContext) -> Prompt | EnsemblePrompt:
    """The prompt tied to the model's signature, each discrete prompt with its perplexity (:mod:`fluency`)."""
    if isinstance(prompt, EnsemblePrompt):
        members = [_finished(member, ctx) for member in prompt.members]
        return dataclasses.replace(prompt.with_members(members), model=ctx.signature())
    discrete = all(t is None for t in (prompt.soft, prompt.deep, prompt.head))
    return dataclasses.replace(prompt, model=ctx.signature(),
                               perplexity=perplexity(ctx.model, prompt) if discrete else prompt.perplexity)


#: Registered searchers by name (``--searcher NAME``).
SEARCHERS: dict[str, type[Searcher]] = {}


def register(cls: type[Searcher]) -> type[Searcher]:
    SEARCHERS[cls.name] = cls
    return cls


class OneTemplate:
    """For searchers that search one template (and one verbalizer): ``templates``/``verbalizers`` are
    one-entry lists (:func:`.config.single`), so the configuration reads like every other searcher's."""

    templates: list[str]
    verbalizers: list[Any]

    @property
    def template(self) -> str:
        return self.templates[0]

    @property
    def verbalizer(self) -> Any:
        return self.verbalizers[0]
