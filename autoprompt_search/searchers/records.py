"""What a search is given and what it hands back: the :class:`Budget`, one :class:`Step`'s report,
one history line (:class:`StepRecord`) and the :class:`SearchResult`. Plain data, so the run
directory can write and read them without depending on the search loop."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import BudgetError
from ..prompts.prompt import Prompt


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


