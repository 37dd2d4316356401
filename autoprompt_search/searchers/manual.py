"""ManualSearcher: score given templates × verbalizers and keep the best.

It is the baseline every leaderboard row is compared to, and the simplest complete searcher: each
step scores a chunk of candidates on the selection split in one batched Evaluator call.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import TemplateError
from ..metrics import selection_score
from ..prompt import Prompt
from .base import SearchContext, Searcher, Step, register


@register
class ManualSearcher(Searcher):
    """Scores every (template, verbalizer) pair; ``per_step`` candidates share one batched call."""

    name = "manual"

    def __init__(
        self,
        *,
        templates: Sequence[str],
        verbalizers: Sequence[Mapping[str, Any] | str | None] = (None,),
        per_step: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.templates = tuple(templates)
        self.verbalizers = tuple(verbalizers) or (None,)
        self.per_step = per_step
        self._candidates: list[Prompt] = []
        self._next = 0
        self._best: tuple[int, float] = (-1, float("-inf"))

    def config(self) -> dict[str, Any]:
        return {"templates": list(self.templates), "verbalizers": list(self.verbalizers),
                "per_step": self.per_step, "seed": self.seed}

    def expected_steps(self) -> int:
        return -(-len(self.templates) * len(self.verbalizers) // self.per_step)

    def start(self, ctx: SearchContext) -> None:
        if not self.templates:
            raise TemplateError("the manual searcher needs at least one template: pass --template")
        self._candidates = [Prompt.build(t, v) for t, v in itertools.product(self.templates, self.verbalizers)]

    def step(self, ctx: SearchContext) -> Step | None:
        chunk = self._candidates[self._next : self._next + self.per_step]
        if not chunk:
            return None
        table = ctx.evaluator.score(chunk, ctx.select, ctx.task)
        scores = {}
        for offset in range(len(chunk)):
            score = selection_score(table.metrics(offset), ctx.task.kind)
            scores[f"candidate_{self._next + offset}"] = score
            if score > self._best[1]:
                self._best = (self._next + offset, score)
        self._next += len(chunk)
        return Step(scores, note=f"scored candidates {self._next - len(chunk)}..{self._next - 1}")

    @property
    def best(self) -> tuple[Prompt, float]:
        index = max(self._best[0], 0)
        return self._candidates[index], self._best[1]

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"next": self._next, "best": list(self._best)}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor], ctx: SearchContext) -> None:
        self.start(ctx)
        self._next = state["next"]
        self._best = (int(state["best"][0]), float(state["best"][1]))
