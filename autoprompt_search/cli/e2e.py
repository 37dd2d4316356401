"""``autoprompt-search make-e2e``: write an E2E low-data folder (train/dev/test jsonl) for ``--data``.

    autoprompt-search make-e2e --data-dir ../shared/data --train 200 --seed 13 --out data/e2e-200-13
    autoprompt-search discover --searcher prefix-tuning --data data/e2e-200-13 --template '{mr}\\n[P]'

See :mod:`autoprompt_search.data.e2e` for how the splits are drawn.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..data.e2e import load_e2e, write_e2e_folder


def add_parser(sub: Any) -> None:
    e2e = sub.add_parser("make-e2e", help="write an E2E low-data task (training MRs drawn from devset) as a folder")
    e2e.add_argument("--data-dir", default=os.environ.get("AUTOPROMPT_DATA_DIR", "../shared/data"),
                     help="benchmark data folder holding E2E/ (default $AUTOPROMPT_DATA_DIR or ../shared/data)")
    e2e.add_argument("--train", type=int, default=200, help="training MRs drawn from devset (default 200)")
    e2e.add_argument("--dev", type=int, default=50, help="selection MRs, disjoint from train (default 50)")
    e2e.add_argument("--seed", type=int, default=13, help="seed of the draw (default 13)")
    e2e.add_argument("--test-limit", type=int, help="keep the first N test MRs only (default: all 630)")
    e2e.add_argument("--out", type=Path, required=True, help="folder to write train/dev/test.jsonl into")
    e2e.add_argument("-v", "--verbose", action="store_true")
    e2e.set_defaults(run=_make_e2e)


def _make_e2e(args: argparse.Namespace) -> int:
    task = load_e2e(args.data_dir, train=args.train, dev=args.dev, seed=args.seed, test_limit=args.test_limit)
    folder = write_e2e_folder(task, args.out)
    counts = {part: len(rows) for part, rows in task.splits.items()}
    print(json.dumps({"task": task.name, "out": str(folder), "mrs": counts}))
    return 0
