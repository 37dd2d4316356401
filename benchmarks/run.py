"""Run a leaderboard suite: expand it into jobs, run the unfinished ones in parallel, one JSON each.

    python -m benchmarks.run SUITE [--jobs N] [--data-dir D] [--out results/runs]
                             [--backend loky|dask --scheduler ADDRESS] [--only PATTERN]

SUITE is a name in ``benchmarks/suites/`` or a YAML path. Every finished job is written atomically
to ``<out>/<suite>/<job-id>.json`` as soon as it arrives, and jobs whose JSON says ``ok`` are
skipped on the next run: a killed run continues where it stopped, a failed job is retried. Jobs run
in joblib worker processes (loky), or on an existing Dask cluster through joblib's Dask backend
(the data directory must then be visible to the workers at the same path). The exit status is 1
when any job of this run failed, so CI fails when a searcher breaks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from joblib import Parallel, delayed, parallel_config
from tqdm.auto import tqdm

from autoprompt_search import atomic
from autoprompt_search.searchers import SEARCHERS

from .common import RESULTS, data_dir
from .jobs import execute
from .suite import Job, SuiteError, load_suite

REPO = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if (args.backend == "dask") != (args.scheduler is not None):
        parser.error("--backend dask needs --scheduler ADDRESS, and --scheduler needs --backend dask")
    try:
        suite = load_suite(args.suite)
    except SuiteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    jobs = [job for job in suite.jobs if args.only is None or fnmatch(job.id, args.only)]
    if not jobs:
        print(f"error: --only {args.only!r} matches none of the {len(suite.jobs)} job ids of {suite.name} "
              f"(e.g. {suite.jobs[0].id})", file=sys.stderr)
        return 2
    out = Path(args.out) / suite.name
    pending = [job for job in jobs if not finished(out / f"{job.id}.json")]
    if missing := sorted(set(SEARCHERS) - set(suite.searchers)):
        print(f"note: registered searcher(s) {', '.join(missing)} have no entry in {suite.path}", file=sys.stderr)
    print(f"{suite.name}: {len(jobs)} jobs, {len(jobs) - len(pending)} already finished, {len(pending)} to run "
          f"→ {out}", file=sys.stderr)
    needs_data = any("demo" not in job.task["data"] for job in pending)
    data = str(data_dir(args.data_dir)) if needs_data else None
    code = _code_version()
    failed: list[str] = []
    with tqdm(total=len(pending), desc=suite.name, unit="job") as bar:
        for record in _records(pending, args, data):
            record["code"] = code
            atomic.write_text(out / f"{record['job_id']}.json", dump_record(record))
            if record["status"] != "ok":
                failed.append(record["job_id"])
                bar.write(f"FAILED {record['job_id']}: {record['error']['type']}: {record['error']['message']}")
            bar.update(1)
    if failed:
        print(f"{len(failed)} job(s) failed (error JSONs in {out}): {', '.join(sorted(failed))}", file=sys.stderr)
        return 1
    return 0


def dump_record(record: dict[str, Any]) -> str:
    """Indented JSON, except that each per-example prediction list stays on one line (thousands of
    test examples would otherwise take a line each)."""
    predictions = record.get("test_predictions")
    if predictions is None:
        return json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    marker = "\u0000predictions\u0000"
    text = json.dumps({**record, "test_predictions": marker}, indent=2, ensure_ascii=False)
    inner = ",\n".join(f"    {json.dumps(key)}: {json.dumps(value)}" for key, value in predictions.items())
    return text.replace(json.dumps(marker), "{\n" + inner + "\n  }") + "\n"


def finished(path: Path) -> bool:
    """Whether ``path`` holds the record of a job that ran to the end (error records are retried)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("status") == "ok"
    except (OSError, ValueError):
        return False


def _records(jobs: list[Job], args: argparse.Namespace, data: str | None) -> Iterator[dict[str, Any]]:
    """Records as jobs finish, in any order. One job at a time runs in this process (no pickling),
    so the model cache serves every job; several loky workers split the cores between them."""
    if not jobs:
        return
    if args.backend == "dask":
        from distributed import Client

        with Client(args.scheduler) as client, parallel_config(backend="dask"):
            workers = max(1, len(client.scheduler_info().get("workers", {})))
            yield from Parallel(n_jobs=workers, return_as="generator_unordered")(
                delayed(execute)(job, data) for job in jobs)
        return
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    yield from Parallel(n_jobs=args.jobs, backend="loky", return_as="generator_unordered")(
        delayed(execute)(job, data, threads) for job in jobs)


def _code_version() -> dict[str, Any]:
    """The git commit the results come from, and whether tracked files differed from it."""
    def git(*command: str) -> str | None:
        try:
            done = subprocess.run(["git", *command], cwd=REPO, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("suite", help="suite name in benchmarks/suites/ (smoke, sst2-16shot, ...) or a YAML path")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes (loky); default 1")
    parser.add_argument("--data-dir", help="benchmark data (default $AUTOPROMPT_DATA_DIR, else ../shared/data)")
    parser.add_argument("--out", default=str(RESULTS / "runs"), help="results folder (default results/runs)")
    parser.add_argument("--backend", choices=["loky", "dask"], default="loky")
    parser.add_argument("--scheduler", help="Dask scheduler address, with --backend dask (e.g. tcp://host:8786)")
    parser.add_argument("--only", metavar="PATTERN", help="run only job ids matching this glob, e.g. 'SST-2__*'")
    return parser


if __name__ == "__main__":
    sys.exit(main())
