"""Examples and tasks: the plain data every other layer consumes.

A task is a set of named splits of :class:`Example` objects. Classification tasks have a closed
label set that a verbalizer maps to words; fact tasks (LAMA-style subject → object) have an open
label space: the gold object is itself the word to predict. Generation tasks (table-to-text,
summarisation) have one or more reference texts per input; the first is also the example's label.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..errors import DataError

TaskKind = Literal["classification", "fact", "generation"]


@dataclass(frozen=True)
class Example:
    """One input: named text fields (``{"sentence": ...}``) and its gold label as a string.

    A generation example also lists its ``references`` (several human texts for one input, as
    E2E has); ``label`` is then the first of them (what a demonstration shows).
    """

    fields: Mapping[str, str]
    label: str | None = None
    references: tuple[str, ...] = ()

    @staticmethod
    def generation(fields: Mapping[str, str], references: Sequence[str]) -> Example:
        """A generation example; the first reference is its label."""
        refs = tuple(references)
        return Example(fields, refs[0] if refs else None, refs)


@dataclass(frozen=True)
class Task:
    """Named splits of examples plus what is needed to score them.

    ``labels`` lists the classes in a fixed order for classification tasks (the order is the
    order of score columns); it is empty for fact and generation tasks.
    """

    name: str
    kind: TaskKind
    splits: Mapping[str, Sequence[Example]]
    labels: tuple[str, ...] = ()
    fields: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not any(len(rows) for rows in self.splits.values()):
            raise DataError(f"task {self.name!r} has no examples; give a data file with at least one row")
        if self.kind == "classification" and not self.labels:
            raise DataError(f"classification task {self.name!r} has no labels; every example needs a label")
        if not self.fields:
            first = next(rows[0] for rows in self.splits.values() if len(rows))
            object.__setattr__(self, "fields", tuple(first.fields))

    def split(self, name: str) -> Sequence[Example]:
        """The examples of split ``name``; a clear error lists the splits that exist."""
        if name not in self.splits or not len(self.splits[name]):
            have = ", ".join(sorted(k for k, v in self.splits.items() if len(v))) or "none"
            raise DataError(f"task {self.name!r} has no split {name!r} (splits: {have}); pass one of those")
        return self.splits[name]

    def has_split(self, name: str) -> bool:
        return name in self.splits and bool(len(self.splits[name]))

    def with_splits(self, **splits: Sequence[Example]) -> Task:
        """A copy of the task with some splits replaced or added."""
        merged = dict(self.splits)
        merged.update(splits)
        return Task(self.name, self.kind, merged, self.labels, self.fields)


def k_shot(examples: Sequence[Example], k: int, *, seed: int, per_label: bool = True) -> list[Example]:
    """Sample ``k`` examples per label (LM-BFF's balanced k-shot), reproducibly for ``seed``.

    With ``per_label=False`` (fact tasks, whose labels are open-ended) ``k`` examples in total.
    """
    if k <= 0:
        raise DataError(f"k-shot size must be positive, got {k}: give k >= 1 (examples per label)")
    rng = random.Random(seed)
    by_label: dict[str | None, list[Example]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
    if not per_label or None in by_label:
        pool = list(examples)
        rng.shuffle(pool)
        return pool[:k]
    chosen: list[Example] = []
    for label in sorted(by_label, key=str):
        rows = by_label[label]
        chosen.extend(rng.sample(rows, min(k, len(rows))))
    rng.shuffle(chosen)
    return chosen


def one_per_reference(examples: Sequence[Example]) -> list[Example]:
    """Each (input, reference) pair of generation examples as an example of its own (how Li & Liang
    2021 train on E2E); examples without several references are kept as they are."""
    out: list[Example] = []
    for x in examples:
        out.extend([Example.generation(x.fields, [ref]) for ref in x.references] if len(x.references) > 1 else [x])
    return out
