"""Run a leaderboard suite: expand it into jobs, run the unfinished ones in parallel, one JSON each.

    python -m benchmarks.run SUITE [--jobs N] [--searchers A,B] [--tasks T,U] [--seeds 13,21] [--only GLOB]
                             [--data-dir D] [--out results/runs] [--cache DIR | --no-cache] [--commit]
                             [--backend loky|dask --scheduler ADDRESS] [--plan]

SUITE is a name in ``benchmarks/suites/`` or a YAML path. Every finished job is written atomically
to ``<out>/<suite>/<job-id>.json`` the moment it arrives (``--commit`` also commits it to git), and
a job whose JSON says ``ok`` *for the same job spec* is skipped on the next run: a killed run
continues where it stopped, a failed job is retried, and a job whose suite entry changed runs again.
Jobs run in joblib worker processes (loky; two on two cores is the ceiling, more only contend), or
on an existing Dask cluster (the data directory must then be visible to the workers at the same
path): a worker that dies mid-job has its job rescheduled on another worker by Dask, and each job's
record is written once, by job id. Test scores come from a content-addressed cache (``--cache``,
default ``~/.cache/autoprompt-search/scores``); the run ends by printing its hit rate and the
forward rows test scoring cost. The exit status is 1 when any job of this run failed. ``--plan``
runs nothing: it prints the open jobs per row and the hours they need (:mod:`benchmarks.plan`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from joblib import Parallel, delayed
from tqdm.auto import tqdm

from autoprompt_search import atomic
from autoprompt_search.searchers import SEARCHERS

from .common import RESULTS, data_dir
from .jobs import execute
from .plan import plan_table
from .score_cache import CacheStats, default_root
from .suite import Job, SuiteError, load_suite, same_job

REPO = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if (args.backend == "dask") != (args.scheduler is not None):
        parser.error("--backend dask needs --scheduler ADDRESS, and --scheduler needs --backend dask")
    cores = os.cpu_count() or 1
    if args.jobs > cores:
        print(f"warning: --jobs {args.jobs} on {cores} core(s): each job already uses its share of the cores, so "
              f"more processes only contend (and hold one model each); use --jobs {cores} or fewer", file=sys.stderr)
    try:
        suite = load_suite(args.suite)
    except SuiteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    jobs, problem = select(suite.jobs, args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out) / suite.name
    pending = cache_friendly_order([job for job in jobs if not finished(out / f"{job.id}.json", job)])
    if missing := sorted(set(SEARCHERS) - {job.searcher_class for job in suite.jobs}):
        print(f"note: registered searcher(s) {', '.join(missing)} have no entry in {suite.path}", file=sys.stderr)
    print(f"{suite.name}: {len(jobs)} jobs, {len(jobs) - len(pending)} already finished, {len(pending)} to run "
          f"→ {out}", file=sys.stderr)
    if args.plan:
        print(plan_table(jobs, pending, out, args.jobs))
        return 0
    needs_data = any("demo" not in job.task["data"] for job in pending)
    data = str(data_dir(args.data_dir)) if needs_data else None
    cache = None if args.no_cache else str(Path(args.cache) if args.cache else default_root())
    code = _code_version()
    failed: list[str] = []
    scoring = CacheStats()
    progress = Progress(len(jobs), len(jobs) - len(pending))
    with tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=suite.name, unit="job") as bar:
        for record in _records(pending, args, data, cache):
            record["code"] = code
            path = out / f"{record['job_id']}.json"
            atomic.write_text(path, dump_record(record))
            if args.commit:
                _commit(path, record)
            scoring.add(record.get("test_scoring") or {})
            line = progress.finished(record)
            if record["status"] != "ok":
                failed.append(record["job_id"])
                line = f"FAILED {record['job_id']}: {record['error']['type']}: {record['error']['message']} · {line}"
            bar.write(line)
            bar.update(1)
    print(f"test scoring this run: {scoring.summary()} (cache: {cache or 'off'})", file=sys.stderr)
    if failed:
        print(f"{len(failed)} job(s) failed (error JSONs in {out}): {', '.join(sorted(failed))}", file=sys.stderr)
        return 1
    return 0


def select(jobs: Sequence[Job], args: argparse.Namespace) -> tuple[list[Job], str | None]:
    """The jobs the filters keep, or an error naming what matched nothing."""
    def split(text: str | None) -> list[str] | None:
        return None if text is None else [part.strip() for part in text.split(",") if part.strip()]

    filters = {"searchers": (split(args.searchers), lambda job: job.searcher),
               "tasks": (split(args.tasks), lambda job: job.task_name),
               "seeds": (split(args.seeds), lambda job: str(job.seed)),
               "only": ([args.only] if args.only else None, lambda job: job.id)}
    kept = list(jobs)
    for flag, (patterns, field) in filters.items():
        if patterns is None:
            continue
        known = sorted({field(job) for job in jobs})
        if unmatched := [p for p in patterns if not any(fnmatch(v, p) for v in known)]:
            return [], f"--{flag} {', '.join(unmatched)} matches none of this suite's {flag}: {', '.join(known[:12])}"
        kept = [job for job in kept if any(fnmatch(field(job), p) for p in patterns)]
    if not kept:
        return [], "the filters together keep no job"
    return kept, None


class Progress:
    """Done/remaining counts and an ETA: the remaining jobs times this run's wall-clock per finished
    job (which already reflects how many run at once)."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.started, self.ran = time.monotonic(), 0

    def finished(self, record: dict[str, Any]) -> str:
        self.done += 1
        self.ran += 1
        remaining = self.total - self.done
        per_job = (time.monotonic() - self.started) / self.ran
        eta = remaining * per_job
        score = f"test {100 * record['test_score']:.1f}" if record["status"] == "ok" else record["status"]
        return (f"{record['job_id']}: {score} ({record['seconds']['total']:.0f} s) · done {self.done}/{self.total}, "
                f"{remaining} remaining, ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}")


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


def cache_friendly_order(jobs: list[Job]) -> list[Job]:
    """Every row's (task × searcher) first pending seed, then every row's second, and so on, each
    round in suite order. Parallel workers then start on different rows rather than on two seeds of
    one row, which for a deterministic row (a manual prompt on a fixed test set) would score the same
    prompt twice at once; its later seeds read the cache the first one filled."""
    seen: dict[tuple[int, str], int] = {}
    rounds = []
    for index, job in enumerate(jobs):
        row = (job.task_index, job.searcher)
        rounds.append((seen.get(row, 0), index))
        seen[row] = seen.get(row, 0) + 1
    return [jobs[index] for _, index in sorted(rounds)]


def finished(path: Path, job: Job | None = None) -> bool:
    """Whether ``path`` holds the record of a job that ran to the end (error records are retried)
    and, given ``job``, ran exactly that job spec (a changed suite entry runs again)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if record.get("status") != "ok":
        return False
    return job is None or same_job(record.get("job") or {}, job)


def _records(jobs: list[Job], args: argparse.Namespace, data: str | None, cache: str | None
             ) -> Iterator[dict[str, Any]]:
    """Records as jobs finish, in any order. With ``--jobs 1`` jobs run in this process (the model
    stays loaded for all of them); loky workers split the cores between them."""
    if not jobs:
        return
    if args.backend == "dask":
        yield from _dask_records(jobs, args.scheduler, data, cache)
        return
    if args.jobs == 1:
        for job in jobs:
            yield execute(job, data, None, cache)
        return
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    yield from Parallel(n_jobs=args.jobs, backend="loky", return_as="generator_unordered")(
        delayed(execute)(job, data, threads, cache) for job in jobs)


def _dask_records(jobs: list[Job], scheduler: str, data: str | None, cache: str | None) -> Iterator[dict[str, Any]]:
    """One Dask task per job. A worker that dies mid-job is noticed by the scheduler, which runs the
    job again on another worker (up to its ``allowed-failures``); a job it gives up on becomes an
    error record, so the next run retries it. Each future yields exactly one record."""
    from distributed import Client, as_completed

    with Client(scheduler) as client:
        futures = {client.submit(execute, job, data, None, cache, pure=False, key=f"job-{job.id}-{time.time_ns()}"):
                   job for job in jobs}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as error:  # KilledWorker and the like: the job itself never returned
                job = futures[future]
                yield {"suite": job.suite, "job_id": job.id, "task": job.task_name, "task_index": job.task_index,
                       "searcher": job.searcher, "seed": job.seed, "model": job.model, "baseline": job.baseline,
                       "job": asdict(job), "status": "error", "seconds": {"total": 0.0},
                       "error": {"type": type(error).__name__, "message": str(error)}}


def _commit(path: Path, record: dict[str, Any]) -> None:
    """Commit one record (and nothing else that is staged) so a cut-off run loses no finished job."""
    message = f"results: {record['suite']} {record['job_id']} ({record['status']})"
    for command in (["git", "add", "--", str(path)], ["git", "commit", "-q", "-m", message, "--", str(path)]):
        done = subprocess.run(command, cwd=path.parent, capture_output=True, text=True)
        if done.returncode:
            print(f"warning: {' '.join(command[:2])} failed for {path}: {done.stderr.strip()}", file=sys.stderr)
            return


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
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes (loky); default 1, "
                        "at most the core count")
    parser.add_argument("--searchers", metavar="A,B", help="only these searcher rows (globs allowed, e.g. 'manual*')")
    parser.add_argument("--tasks", metavar="T,U", help="only these tasks (globs allowed)")
    parser.add_argument("--seeds", metavar="S,T", help="only these seeds")
    parser.add_argument("--only", metavar="PATTERN", help="only job ids matching this glob, e.g. 'SST-2__*'")
    parser.add_argument("--data-dir", help="benchmark data (default $AUTOPROMPT_DATA_DIR, else ../shared/data)")
    parser.add_argument("--out", default=str(RESULTS / "runs"), help="results folder (default results/runs)")
    parser.add_argument("--cache", help="score cache folder (default $AUTOPROMPT_SEARCH_CACHE/scores or "
                        "~/.cache/autoprompt-search/scores)")
    parser.add_argument("--no-cache", action="store_true", help="score test without the cache")
    parser.add_argument("--commit", action="store_true", help="git-commit each record as it is written")
    parser.add_argument("--backend", choices=["loky", "dask"], default="loky")
    parser.add_argument("--scheduler", help="Dask scheduler address, with --backend dask (e.g. tcp://host:8786)")
    parser.add_argument("--plan", action="store_true", help="run nothing: print the open jobs per row and the "
                        "hours they need, priced by the finished records (with --jobs workers)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
