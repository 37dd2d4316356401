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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.tasks import Example, Task
from ..errors import AutopromptError, DataError, PromptFileError
from ..models.language_model import LanguageModel
from ..prompts.prompt import ModelSignature, Prompt
from ..scoring.evaluator import Evaluator
from .config import parameter_names, plain
from .records import Budget, SearchResult, Step, StepRecord
from .run_dir import RunDir


@dataclass
class SearchContext:
    """What a step may use: the task, the model, the shared Evaluator, a seeded RNG, and the
    examples to train on and to select on (never the test split)."""

    task: Task
    model: LanguageModel
    evaluator: Evaluator
    rng: np.random.Generator
    train: Sequence[Example]
    select: Sequence[Example]
    seed: int

    def signature(self) -> ModelSignature:
        return ModelSignature(self.model.name, self.model.vocab_size, self.model.hidden_size)


class Searcher(ABC):
    """Base class: configuration in the constructor, all work in :meth:`search`."""

    name: ClassVar[str]

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
        ctx = SearchContext(task, model, evaluator, np.random.default_rng(self.seed), train,
                            task.split(select_split), self.seed)
        run = RunDir(run_dir) if run_dir is not None else None
        history: list[StepRecord] = []
        steps, spent, forward0 = 0, 0.0, evaluator.forward_rows
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
        began = time.perf_counter() - spent
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
        prompt, score = self.best
        # The saved prompt carries the Evaluator's calibration (with its fitted prior) and demonstrations.
        prompt = ctx.evaluator.resolved(dataclasses.replace(prompt, model=ctx.signature()), ctx.task)
        # generation: the final prompt is decoded (BLEU, ROUGE-L); the search itself selected on likelihood
        dev_metrics = ctx.evaluator.evaluate(prompt, ctx.select, ctx.task, decode=True)
        test = ctx.task.split("test") if ctx.task.has_split("test") else None
        test_metrics = ctx.evaluator.evaluate(prompt, test, ctx.task, decode=True) if test is not None else None
        result = SearchResult(self.name, self.config(), self.seed, prompt, score, dev_metrics, test_metrics,
                              history, select_split)
        if run:
            run.finish(result, ctx.model.decode)
        return result


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
