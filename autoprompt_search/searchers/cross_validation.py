"""k-fold cross-validation of a whole search procedure (Perez, Kiela & Cho 2021, section 3).

With few labelled examples there is no separate dev set worth the name, and scoring the picked
prompt on the examples that picked it flatters it. Cross-validation of the *procedure* answers the
question a user actually has — "how well will prompts found this way do on new data?" — by running
the search ``k`` times, each on ``k − 1`` folds of all labelled examples (train ∪ dev, used for both
search and selection) and scoring its result on the held-out fold. It also compares procedures
(searchers, options) fairly.

Cost: ``k`` complete searches plus one scoring pass over all labelled examples, so it is meant for
searchers that are cheap to repeat (manual, label search, filter, optuna with few trials); a
gradient search costs ``k`` times its usual time. Test is never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.tasks import Example, Task
from ..errors import DataError
from ..models.language_model import LanguageModel
from ..scoring.evaluator import Evaluator
from .base import Searcher
from .records import Budget


@dataclass
class CrossValidation:
    """Per-fold metrics of the searched prompt on its held-out fold, their example-weighted mean,
    the number of searches run, and each fold's rendered prompt."""

    folds: list[dict[str, float]]
    mean: dict[str, float]
    searches: int
    prompts: list[str]


def cross_validate(
    factory: Callable[[int], Searcher],
    task: Task,
    model: LanguageModel,
    *,
    folds: int = 4,
    budget: Budget | None = None,
    evaluator: Evaluator | None = None,
    seed: int = 0,
) -> CrossValidation:
    """Run ``factory(seed)``'s search on each ``folds − 1`` folds of the labelled examples; score on the rest."""
    labelled = [e for split in ("train", "dev") if task.has_split(split) for e in task.split(split)]
    if folds < 2 or len(labelled) < folds:
        raise DataError(f"cross-validation needs 2 <= folds <= labelled examples ({len(labelled)}), got folds={folds}")
    evaluator = evaluator or Evaluator(model)
    assignment = _stratified_folds(labelled, folds, np.random.default_rng(seed), task.kind)
    rows: list[dict[str, float]] = []
    prompts: list[str] = []
    for k in range(folds):
        inside = [e for e, f in zip(labelled, assignment, strict=True) if f != k]
        held_out = [e for e, f in zip(labelled, assignment, strict=True) if f == k]
        fold_task = Task(f"{task.name}-cv{k}", task.kind, {"train": inside, "dev": inside}, task.labels, task.fields)
        result = factory(seed).search(fold_task, model, budget=budget, evaluator=evaluator, progress=False)
        rows.append(evaluator.evaluate(result.prompt, held_out, fold_task))
        prompts.append(result.prompt.render(model.decode))
    return CrossValidation(rows, _weighted_mean(rows), folds, prompts)


def _stratified_folds(examples: list[Example], folds: int, rng: np.random.Generator, kind: str) -> list[int]:
    """A fold index per example; classes are dealt round-robin so every fold has each class's share."""
    order = rng.permutation(len(examples))
    if kind == "classification":
        order = np.array(sorted(order, key=lambda i: str(examples[i].label)), dtype=int)
    assignment = [0] * len(examples)
    for position, index in enumerate(order):
        assignment[int(index)] = position % folds
    return assignment


def _weighted_mean(rows: list[dict[str, Any]]) -> dict[str, float]:
    total = sum(r["n"] for r in rows)
    keys = [k for k in rows[0] if k != "n" and isinstance(rows[0][k], int | float)]
    return {**{k: float(sum(r[k] * r["n"] for r in rows) / total) for k in keys}, "n": total}
