"""Searchers that score a finite pool of (template, verbalizer) candidates, a chunk per step.

The manual searcher's pool is what the user gave; label-word search builds its pool from the
model's predictions. Scoring, best-so-far and checkpointing are the same, so they live here once.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch

from ..prompts.prompt import Prompt
from ..scoring.selection import SelectionOptions, top_indices
from .base import SearchContext, Searcher
from .records import Step

#: One candidate as plain data: a template string and a label → word(s) mapping (or None).
Spec = tuple[str, dict[str, Any] | None]


class PoolSearcher(SelectionOptions, Searcher):
    """Scores ``per_step`` candidates per step on the selection split in one Evaluator call; the
    final pick (:mod:`final`) sees the top ``FINALISTS`` (or ``ensemble``, if more)."""

    FINALISTS = 8

    def __init__(self, *, per_step: int = 8, seed: int = 0, **selection: Any) -> None:
        super().__init__(seed=seed)
        self.set_selection(**selection)
        self.per_step = per_step
        self._pool: list[Spec] = []
        self._next = 0
        self._best: tuple[int, float] = (-1, float("-inf"))
        self._scores: list[float] = []
        self._best_metrics: dict[str, float] | None = None  # not checkpointed: rescored after a resume

    @abstractmethod
    def build_pool(self, ctx: SearchContext) -> list[Spec]:
        """The candidates to score, in order (called once, on a fresh search)."""

    def start(self, ctx: SearchContext) -> None:
        self._pool = [(template, dict(v) if v else None) for template, v in self.build_pool(ctx)]

    def step(self, ctx: SearchContext) -> Step | None:
        chunk = self._pool[self._next : self._next + self.per_step]
        if not chunk:
            return None
        table = ctx.evaluator.score([Prompt.build(t, v) for t, v in chunk], ctx.select, ctx.task)
        scores = {}
        for offset in range(len(chunk)):
            score = ctx.score(table.metrics(offset))
            self._scores.append(score)
            scores[self.describe(self._next + offset)] = score
            if score > self._best[1]:
                self._best, self._best_metrics = (self._next + offset, score), table.metrics(offset)
        self._next += len(chunk)
        return Step(scores, note=f"scored candidates {self._next - len(chunk)}..{self._next - 1}")

    def describe(self, index: int) -> str:
        """A short history key for candidate ``index``."""
        return f"candidate_{index}"

    @property
    def best(self) -> tuple[Prompt, float]:
        template, verbalizer = self._pool[max(self._best[0], 0)]
        return Prompt.build(template, verbalizer), self._best[1]

    def best_metrics(self) -> dict[str, float] | None:
        return self._best_metrics

    def final_candidates(self) -> list[Prompt]:
        ranked = top_indices(self._scores, max(self.FINALISTS, self.ensemble)) or [0]
        return [Prompt.build(*self._pool[i]) for i in ranked]

    def reference(self) -> Prompt | None:
        """The first candidate of the pool: the first given template with the first given words."""
        return Prompt.build(*self._pool[0]) if self._pool else None

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"pool": [list(spec) for spec in self._pool], "next": self._next, "best": list(self._best),
                "scores": self._scores}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor], ctx: SearchContext) -> None:
        self._pool = [(template, verbalizer) for template, verbalizer in state["pool"]]
        self._next = int(state["next"])
        self._best = (int(state["best"][0]), float(state["best"][1]))
        self._scores = [float(x) for x in state["scores"]]
