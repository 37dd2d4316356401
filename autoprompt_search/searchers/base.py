"""The Searcher interface and the one search loop every searcher shares.

A searcher implements four small methods, called in this order::

    start(ctx)            once, on a fresh search (never on resume)
    step(ctx) -> Step     repeatedly, until it returns None or the budget ends
    state_dict()          after every step, to checkpoint (JSON-able dict + tensors)
    load_state_dict(s)    instead of start() when resuming

and exposes ``best`` (the incumbent prompt and its selection score). The loop — budget, progress
bar, history, checkpoints, callbacks, final scoring and run-directory artifacts — lives here once,
so a new searcher is one small module (STYLE.md, principle 1).
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import AutopromptError, BudgetError, DataError, PromptFileError
from ..evaluator import Evaluator
from ..models.language_model import LanguageModel
from ..prompt import ModelSignature, Prompt
from ..tasks import Example, Task
from .run_dir import RunDir


@dataclass(frozen=True)
class Budget:
    """Whichever ends first: iterations (searcher steps), forward passes (sequences run by the
    Evaluator), or wall-clock seconds. ``None`` means unlimited for that measure."""

    iterations: int | None = None
    forward_passes: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("iterations", "forward_passes", "seconds"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise BudgetError(f"budget {name}={value} allows no work: give a positive number or leave it unset")

    def exhausted(self, steps: int, forward_passes: int, seconds: float) -> bool:
        return (
            (self.iterations is not None and steps >= self.iterations)
            or (self.forward_passes is not None and forward_passes >= self.forward_passes)
            or (self.seconds is not None and seconds >= self.seconds)
        )


@dataclass
class Step:
    """What one step reports: the scores it saw and a short note for the history."""

    scores: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class StepRecord:
    """One line of ``history.jsonl``."""

    step: int
    best_score: float
    scores: dict[str, float]
    forward_passes: int
    seconds: float
    note: str = ""


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


@dataclass
class SearchResult:
    """The best prompt, its scores and the search history; JSON-serialisable via :meth:`to_json`."""

    searcher: str
    config: dict[str, Any]
    seed: int
    prompt: Prompt
    dev_score: float
    dev_metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    history: list[StepRecord]
    selection_split: str

    def to_json(self, decode: Any = None) -> dict[str, Any]:
        return {
            "searcher": self.searcher,
            "config": self.config,
            "seed": self.seed,
            "prompt": self.prompt.to_json(decode),
            "dev_score": self.dev_score,
            "selection_split": self.selection_split,
            "dev_metrics": self.dev_metrics,
            "test_metrics": self.test_metrics,
            "history": [dataclasses.asdict(r) for r in self.history],
        }


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
        """Constructor arguments, for ``config.json``."""
        return {"seed": self.seed}

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
        prompt = ctx.evaluator.fitted(dataclasses.replace(prompt, model=ctx.signature()), ctx.task)
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


def check_options(name: str, config: dict[str, Any]) -> None:
    """Refuse unknown or missing searcher options, naming the ones the searcher takes."""
    parameters = inspect.signature(SEARCHERS[name].__init__).parameters
    accepted = [p for p in parameters if p not in ("self", "seed")
                and parameters[p].kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    if "seed" in config:
        raise DataError("give the seed with --seed, not among the searcher's options")
    if unknown := sorted(set(config) - set(accepted)):
        raise DataError(
            f"unknown option(s) {', '.join(unknown)} for searcher {name!r} (in --config or --space): "
            f"it takes {', '.join(accepted) or 'no options'}; fix the spelling or drop them"
        )
    required = [p for p in accepted if parameters[p].default is inspect.Parameter.empty and p not in config]
    if required:
        flags = {"templates": "--template", "verbalizers": "--verbalizer"}
        how = ", ".join(f"{p} ({flags[p]})" if p in flags else p for p in required)
        raise DataError(f"searcher {name!r} needs {how}: pass it on the command line or in --config")
