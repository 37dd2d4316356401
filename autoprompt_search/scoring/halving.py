"""Successive halving (Jamieson & Talwalkar, 2016; Li et al., 2018's Hyperband rung): score all
candidates on a small slice, keep the best fraction, double the slice, repeat. Ranking C candidates
this way costs far less than C full evaluations; the filter and Optuna searchers build on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..data.tasks import Example, Task
from ..errors import BudgetError
from ..prompts.prompt import Prompt
from . import metrics
from .score_table import ScoreTable


class Scorer(Protocol):
    """Anything that scores prompts on examples in one call (the Evaluator)."""

    def score(self, prompts: Sequence[Prompt], examples: Sequence[Example], task: Task) -> ScoreTable: ...


@dataclass
class Ranking:
    """Result of :func:`rank`: survivors best-first, their final scores, every rung."""

    order: list[int]
    scores: list[float]
    rungs: list[dict]


def rank(
    scorer: Scorer,
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
    for rung, n in enumerate(halving_sizes(len(examples), rungs)):
        table = scorer.score([prompts[i] for i in alive], examples[:n], task)
        scores = [metrics.selection_score(table.metrics(j), task.kind) for j in range(len(alive))]
        history.append({"rung": rung, "examples": n, "candidates": list(alive), "scores": scores})
        survivors = len(alive) if rung == rungs - 1 else max(1, int(np.ceil(len(alive) * keep)))
        alive = best_first(alive, scores)[:survivors]
    return Ranking(alive, history[-1]["scores"], history)


def halving_sizes(n_examples: int, rungs: int) -> list[int]:
    """Example counts of successive-halving rungs: the last uses all ``n_examples``, each earlier one half the next."""
    return [n_examples if r == rungs - 1 else max(1, n_examples >> (rungs - 1 - r)) for r in range(rungs)]


def best_first(candidates: Sequence[int], scores: Sequence[float]) -> list[int]:
    """``candidates`` sorted by ``scores`` (parallel), best first; ties go to the lower index."""
    order = sorted(range(len(candidates)), key=lambda j: (-scores[j], candidates[j]))
    return [candidates[j] for j in order]
