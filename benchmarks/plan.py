"""What is left of a suite, and about how long it takes: ``python -m benchmarks.run SUITE --plan``.

A long grid is planned around the hours it needs; the runner's ETA only exists once jobs of this
run have finished. The plan prices each open job by the finished records already in the results
folder: the mean wall-clock of the same row on the same task, else of the same row on any task
(a row measured on one task prices its jobs on the others), else nothing — a row that never ran
says so instead of guessing. Records already include the slowdown of the workers they ran beside,
so the worker-seconds are divided by the worker count for the wall-clock.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .suite import Job


def measured_seconds(out: Path) -> dict[tuple[str, str], list[float]]:
    """Wall-clock seconds of the finished records in ``out``, by (row, task)."""
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    for path in sorted(out.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("status") == "ok" and isinstance(record.get("seconds"), dict):
            job = record.get("job") or {}
            row, task = job.get("searcher"), (job.get("task") or {}).get("name")
            if row and task:
                seconds[(str(row), str(task))].append(float(record["seconds"]["total"]))
    return seconds


def plan_table(jobs: Sequence[Job], pending: Sequence[Job], out: Path, workers: int) -> str:
    """Per row: finished / all jobs, open jobs, seconds a job and the open worker-hours; then the total."""
    seconds = measured_seconds(out)
    by_row: dict[str, list[float]] = defaultdict(list)
    for (row, _), values in seconds.items():
        by_row[row].extend(values)
    rows = list(dict.fromkeys(job.searcher for job in jobs))
    lines = ["| row | finished | open | s a job (records) | open worker-hours |", "|---|---|---|---|---|"]
    priced, unpriced = 0.0, 0
    for row in rows:
        total = sum(job.searcher == row for job in jobs)
        open_jobs = [job for job in pending if job.searcher == row]
        costs = [_mean(seconds.get((row, job.task_name)) or by_row.get(row)) for job in open_jobs]
        known = [c for c in costs if c is not None]
        priced += sum(known)
        unpriced += len(costs) - len(known)
        measured = by_row.get(row)
        per_job = f"{_mean(measured):.0f} ({len(measured)})" if measured else "– (never ran)"
        hours = "?" if costs and not known else f"{sum(known) / 3600:.2f}"  # a row prices all its jobs or none
        lines.append(f"| {row} | {total - len(open_jobs)}/{total} | {len(open_jobs)} | {per_job} | {hours} |")
    summary = (f"{len(pending)} open job(s): about {priced / 3600:.2f} worker-hours, "
               f"{priced / workers / 3600:.2f} h of wall-clock with --jobs {workers}")
    if unpriced:
        summary += f", plus {unpriced} job(s) of rows that never ran (no estimate)"
    return "\n".join([*lines, "", summary])


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None
