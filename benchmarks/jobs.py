"""One job in a worker process: load the (cached) model and the task, search, score test once.

The returned record is plain JSON: the full SearchResult, the per-example test predictions that
paired statistics need, what the prompt stores, the environment and the wall-clock. A job that
raises returns an error record instead, so one failure never stops the other jobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import traceback
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from autoprompt_search import Evaluator, load_model
from autoprompt_search.data.tasks import Task
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.scoring.metrics import primary_metric
from autoprompt_search.scoring.score_table import ScoreTable
from autoprompt_search.searchers import SEARCHERS, Budget

from . import common
from .suite import Job, SuiteError, resolve_config
from .tasks import load_benchmark_task

RECORD_FORMAT = 1
#: Loaded models by (name, device): each worker process loads a model once for all its jobs.
_MODELS: dict[tuple[str, str], tuple[LanguageModel, int]] = {}
#: Test score tables by (model, evaluator options, test examples, prompt). Seeds of a fixed test
#: set often end on the same prompt (always, for a one-template manual baseline); scoring is
#: deterministic, so the table is reused instead of recomputed, and the record says so.
_TEST_TABLES: OrderedDict[str, ScoreTable] = OrderedDict()
_TEST_TABLES_MAX = 32


def execute(job: Job, data_dir: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run ``job``; never raises for a failure of the job itself (KeyboardInterrupt still stops it)."""
    started = time.perf_counter()
    record: dict[str, Any] = {
        "format": RECORD_FORMAT, "suite": job.suite, "job_id": job.id, "task": job.task_name,
        "task_index": job.task_index, "searcher": job.searcher, "seed": job.seed, "model": job.model,
        "baseline": job.baseline, "job": asdict(job),
    }
    try:
        record.update(_run(job, data_dir, threads), status="ok")
    except Exception as error:  # a failing job must not take the others down; the runner exits non-zero
        record.update(status="error", error={"type": type(error).__name__, "message": str(error),
                                             "traceback": traceback.format_exc()})
    record.setdefault("seconds", {})["total"] = round(time.perf_counter() - started, 3)
    record["environment"] = environment(str(job.evaluator.get("dtype", "float32")))
    return record


def environment(dtype: str) -> dict[str, Any]:
    """Versions, CPU and dtype of the worker that ran the job."""
    return {**common.environment(dtype), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "platform": platform.platform(), "numpy": np.__version__}


def _run(job: Job, data_dir: str | None, threads: int | None) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    clock = time.perf_counter()
    lm, n_parameters, model_seconds = _model(job.model, job.device)
    task, variables = load_benchmark_task(job.task, job.seed, lambda: common.data_dir(data_dir))
    if not task.has_split("test"):
        raise SuiteError(f"task {task.name!r} has no test split; a leaderboard reports test scores")
    config = resolve_config(job.config, variables)
    searcher = SEARCHERS[job.searcher](seed=job.seed, **config)
    evaluator = Evaluator(lm, **job.evaluator)
    # The search never sees test (it selects on dev); test is scored once below, with predictions kept.
    search_task = Task(task.name, task.kind, {k: v for k, v in task.splits.items() if k != "test"},
                       task.labels, task.fields)
    task_seconds = time.perf_counter() - clock - model_seconds
    clock = time.perf_counter()
    result = searcher.search(search_task, lm, budget=Budget(**job.budget), evaluator=evaluator, progress=False)
    search_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    table, cached = _test_table(job, evaluator, result.prompt, task)
    result.test_metrics = table.metrics(0)
    metric = primary_metric(task.kind)
    soft = result.prompt.soft
    return {
        "task_kind": task.kind, "labels": list(task.labels), "metric": metric,
        "test_score": result.test_metrics[metric], "dev_score": result.dev_score,
        "result": result.to_json(lm.decode), "test_predictions": _predictions(table),
        "test_cached": cached,
        "storage": {"trigger_ids": len(result.prompt.trigger_ids),
                    "soft_parameters": int(soft.numel()) if soft is not None else 0,
                    "model_parameters": n_parameters},
        "seconds": {"model_load": round(model_seconds, 3), "task_load": round(task_seconds, 3),
                    "search": round(search_seconds, 3), "test": round(time.perf_counter() - clock, 3)},
    }


def _model(name: str, device: str) -> tuple[LanguageModel, int, float]:
    """The cached model, its parameter count and the seconds spent loading it now (0 when cached)."""
    key = (name, device)
    started = time.perf_counter()
    if key not in _MODELS:
        lm = load_model(name, device=device)
        _MODELS[key] = (lm, sum(p.numel() for p in lm.model.parameters()))
    lm, n_parameters = _MODELS[key]
    return lm, n_parameters, time.perf_counter() - started


def _test_table(job: Job, evaluator: Evaluator, prompt: Prompt, task: Task) -> tuple[ScoreTable, bool]:
    """Score ``prompt`` on the test split, reusing this process's table for an identical request."""
    test = task.split("test")
    key = None
    if prompt.soft is None:  # soft vectors are not in the JSON, so such prompts are never reused
        identity = [job.model, job.device, job.evaluator, task.kind, list(task.labels), prompt.to_json(),
                    [[dict(e.fields), e.label] for e in test]]
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        if key in _TEST_TABLES:
            _TEST_TABLES.move_to_end(key)
            return _TEST_TABLES[key], True
    table = evaluator.score([prompt], test, task)
    if key is not None:
        _TEST_TABLES[key] = table
        while len(_TEST_TABLES) > _TEST_TABLES_MAX:
            _TEST_TABLES.popitem(last=False)
    return table, False


def _predictions(table: ScoreTable) -> dict[str, Any]:
    """Per test example: predicted and gold label index (classification) or the gold object's rank
    (facts; ``null`` when it was not a candidate), and whether the prediction is correct."""
    if table.kind == "classification":
        pred = table.scores[0].argmax(-1)
        correct = pred == table.gold
        return {"pred": pred.tolist(), "gold": table.gold.tolist(), "correct": correct.astype(int).tolist()}
    rank = table.rank[0]
    correct = np.asarray(table.greedy[0] if table.fact_match == "greedy" else rank == 1)
    return {"rank": [int(r) if np.isfinite(r) else None for r in rank], "correct": correct.astype(int).tolist()}

