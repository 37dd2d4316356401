"""Full-data SST-2: search on GLUE train, select on held-apart *full sentences*, test on GLUE dev.

GLUE's SST-2 train is 67,349 rows, but only ~6.9k are review sentences: the rest are the phrases
of their parse trees ("the parental units", "contains no wit"), each labelled on its own (Socher
et al., 2013). Selecting prompts on random train rows would select on short phrases, unlike the
test set (GLUE dev, 872 full sentences). The full sentences are recovered from the data alone: a
row is a full sentence when it is not a contiguous word span of any other train row (the phrases
of a tree are spans of its root). That finds 6,885 sentences, 96 % ending in . ! or ?.

The selection slice is ``size`` of them, balanced per label, drawn with the job seed; every row
that is a span of a selected sentence (its own phrases) leaves train too, so nothing of a
selection sentence is trained on.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from autoprompt_search.data.loaders import load_task
from autoprompt_search.data.tasks import Example, Task, k_shot

from .suite import SuiteError


def load_sst2_full(data_dir: Path, size: int, seed: int) -> Task:
    """GLUE SST-2 train minus ``size`` held-apart full sentences (dev) and their phrases; test = GLUE dev."""
    if size < 2 or size % 2:
        raise SuiteError(f"sst2_full: the selection slice needs an even size >= 2 (half per label), got {size}")
    train, dev, labels = _glue(str(data_dir / "SST-2" / "glue"))
    sentences = [train[i] for i in full_sentences(tuple(e.fields["sentence"] for e in train))]
    selected = k_shot(sentences, size // 2, seed=seed)
    held = {span for e in selected for span in _spans(_words(e))}
    rest = [e for e in train if _words(e) not in held]
    return Task("SST-2-full", "classification", {"train": rest, "dev": selected, "test": dev}, labels,
                ("sentence",))


def full_sentences(rows: tuple[str, ...]) -> list[int]:
    """Indices of the rows that are no other row's contiguous word span (first copy of each)."""
    words = [" ".join(r.split()) for r in rows]
    known = set(words)
    inside = {span for w in words for span in _spans(w, proper=True) if span in known}
    seen: set[str] = set()
    keep = []
    for i, w in enumerate(words):
        if w not in inside and w not in seen:
            seen.add(w)
            keep.append(i)
    return keep


def _spans(text: str, proper: bool = False) -> set[str]:
    tokens = text.split()
    n = len(tokens)
    return {" ".join(tokens[i:j]) for i in range(n) for j in range(i + 1, n + 1) if not (proper and j - i == n)}


def _words(example: Example) -> str:
    return " ".join(str(example.fields["sentence"]).split())


@lru_cache(maxsize=2)
def _glue(folder: str) -> tuple[list[Example], list[Example], tuple[str, ...]]:
    """GLUE train, dev and labels, read once per process (several jobs of a worker share them)."""
    glue = load_task(Path(folder))
    return list(glue.split("train")), list(glue.split("dev")), glue.labels
