"""E2E NLG (Novikova et al. 2017) in Prefix-Tuning's low-data setting (Li & Liang 2021, section 7).

The data snapshot has E2E's ``devset.csv`` (547 meaning representations, several references each)
and ``testset_w_refs.csv`` (630 MRs) but not the 42k-row train set, so the low-data setting is
built from what is there: ``train`` MRs drawn from devset with a seed, a disjoint set of ``dev``
MRs from the same draw for selection, and ``test`` = testset_w_refs with every reference of each
MR (the challenge's multi-reference scoring). For one seed the draws are nested: the 50 training
MRs of seed 13 are the first 50 of its 100 and 200, and the dev MRs are the same for every size.

:func:`write_e2e_folder` writes such a task as a ``train/dev/test.jsonl`` folder
(``{"mr": ..., "target": [references]}``), which ``load_task`` and ``--data`` read like any other.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .. import atomic
from ..errors import DataError
from .loaders import load_task
from .tasks import Example, Task

E2E_FILES = {"dev": "devset.csv", "test": "testset_w_refs.csv"}


def load_e2e(
    data_dir: str | Path, *, train: int = 200, dev: int = 50, seed: int = 13, test_limit: int | None = None
) -> Task:
    """The low-data E2E task: ``train`` + ``dev`` distinct MRs drawn from devset for ``seed``, test from
    testset_w_refs (its first ``test_limit`` MRs in file order, if given: a fixed, documented subset)."""
    folder = Path(data_dir) / "E2E"
    paths = {part: folder / name for part, name in E2E_FILES.items()}
    if missing := [str(p) for p in paths.values() if not p.is_file()]:
        raise DataError(f"{', '.join(missing)} not found: point data_dir at the benchmark data folder holding E2E/")
    if train < 1 or dev < 1 or (test_limit is not None and test_limit < 1):
        raise DataError(f"train={train}, dev={dev}, test_limit={test_limit}: each must be at least 1")
    pool = list(load_task(paths["dev"], split="train").split("train"))
    if train + dev > len(pool):
        raise DataError(f"{paths['dev']} has {len(pool)} MRs, fewer than train + dev = {train + dev}: ask for fewer")
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    test = list(load_task(paths["test"]).split("test"))[:test_limit]
    splits = {"dev": [pool[i] for i in order[:dev]], "train": [pool[i] for i in order[dev : dev + train]],
              "test": test}
    suffix = f"-test{test_limit}" if test_limit else ""
    return Task(f"E2E/{train}-{seed}{suffix}", "generation", splits, fields=("mr",))


def write_e2e_folder(task: Task, out: str | Path) -> Path:
    """Write a generation task as ``out/{train,dev,test}.jsonl`` (each line its fields and ``target``:
    the list of references), atomically per file; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for part, rows in task.splits.items():
        lines = [json.dumps({**dict(x.fields), "target": list(_references(x))}, ensure_ascii=False) for x in rows]
        atomic.write_text(out / f"{part}.jsonl", "\n".join(lines) + "\n")
    return out


def _references(example: Example) -> tuple[str, ...]:
    return example.references or ((example.label,) if example.label else ())
