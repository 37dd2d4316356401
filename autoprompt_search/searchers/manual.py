"""ManualSearcher: score given templates × verbalizers and keep the best.

It is the baseline every leaderboard row is compared to, and the simplest complete searcher: each
step scores a chunk of candidates on the selection split in one batched Evaluator call.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ..prompts.verbalizer import Verbalizer
from .base import SearchContext, register
from .pool import PoolSearcher, Spec


@register
class ManualSearcher(PoolSearcher):
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
        super().__init__(per_step=per_step, seed=seed)
        if not templates:
            raise ConfigError("the manual searcher needs at least one template: pass --template (or templates=[...])")
        self.templates = tuple(templates)
        self.verbalizers = tuple(verbalizers) or (None,)


    def expected_steps(self) -> int:
        return -(-len(self.templates) * len(self.verbalizers) // self.per_step)

    def build_pool(self, ctx: SearchContext) -> list[Spec]:
        words = [None if v is None else {k: list(w) for k, w in Verbalizer.parse(
            json.loads(v) if isinstance(v, str) else v).words.items()} for v in self.verbalizers]
        return list(itertools.product(self.templates, words))
