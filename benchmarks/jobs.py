"""One job in a worker process: load the (cached) model and the task, search, score test once.

The returned record is plain JSON: the full SearchResult, the per-example test predictions that
paired statistics need, what the prompt stores, the environment and the wall-clock. A job that
raises returns an error record instead, so one failure never stops the other jobs.

Test scoring goes through the content-addressed :class:`~benchmarks.score_cache.ScoreCache`
(hits, misses and the forward rows spent are in the record's ``test_scoring``). Besides the final
prompt, the prompt that was best at each checkpoint (a fraction of the search's seconds) is scored
on test after the search, for the time-to-quality plot: the search is timed without that work.

A generation task's final prompt is also decoded on test (texts cached like scores): its cell
metric is corpus BLEU (``test_score`` = BLEU / 100, on the scale of the other metrics), and the
record keeps each input's text, sacrebleu n-gram statistics and ROUGE-L, so a paired bootstrap can
re-sum corpus BLEU over resampled inputs. Its checkpoints are not scored: decoding test at each one
would cost as much as the search itself.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from autoprompt_search import Demonstrations, Evaluator, load_model
from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.ensemble import EnsemblePrompt
from autoprompt_search.prompts.prompt import ModelSignature, Prompt
from autoprompt_search.scoring.metrics import primary_metric
from autoprompt_search.scoring.reference_scoring import reference_texts
from autoprompt_search.scoring.score_table import ScoreTable
from autoprompt_search.scoring.text_metrics import bleu_from_statistics, bleu_statistics, rouge_l_scores
from autoprompt_search.searchers import SEARCHERS, Budget, Searcher, StepRecord

from . import common
from .common import trained_parameters
from .score_cache import ScoreCache
from .suite import Job, SuiteError, resolve_config
from .tasks import load_benchmark_task

RECORD_FORMAT = 2
#: Loaded models by (name, device): each worker process loads a model once for all its jobs.
_MODELS: dict[tuple[str, str], tuple[LanguageModel, int]] = {}


def execute(job: Job, data_dir: str | None = None, threads: int | None = None,
            cache_dir: str | None = None) -> dict[str, Any]:
    """Run ``job``; never raises for a failure of the job itself (KeyboardInterrupt still stops it).
    ``cache_dir`` is the score cache's folder (None: no cache, every test scoring runs the model)."""
    started = time.perf_counter()
    record: dict[str, Any] = {
        "format": RECORD_FORMAT, "suite": job.suite, "job_id": job.id, "task": job.task_name,
        "task_index": job.task_index, "searcher": job.searcher, "method": job.searcher_class, "seed": job.seed,
        "model": job.model,
        "baseline": job.baseline, "job": asdict(job),
    }
    try:
        record.update(_run(job, data_dir, threads, ScoreCache(cache_dir)), status="ok")
    except Exception as error:  # a failing job must not take the others down; the runner exits non-zero
        record.update(status="error", error={"type": type(error).__name__, "message": str(error),
                                             "traceback": traceback.format_exc()})
    record.setdefault("seconds", {})["total"] = round(time.perf_counter() - started, 3)
    record["environment"] = common.environment(str(job.evaluator.get("dtype", "float32")))
    return record


def _run(job: Job, data_dir: str | None, threads: int | None, cache: ScoreCache) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    clock = time.perf_counter()
    lm, n_parameters, model_seconds = _model(job.model, job.device)
    task, variables = load_benchmark_task(job.task, job.seed, lambda: common.data_dir(data_dir))
    if not task.has_split("test"):
        raise SuiteError(f"task {task.name!r} has no test split; a leaderboard reports test scores")
    config = resolve_config(job.config, variables)
    searcher = SEARCHERS[job.searcher_class](seed=job.seed, **config)
    evaluator = Evaluator(lm, **evaluator_options(job))
    # The search never sees test (it selects on dev); test is scored below, with predictions kept.
    search_task = Task(task.name, task.kind, {k: v for k, v in task.splits.items() if k != "test"},
                       task.labels, task.fields)
    task_seconds = time.perf_counter() - clock - model_seconds
    incumbents = Incumbents(searcher)
    clock = time.perf_counter()
    result = searcher.search(search_task, lm, budget=Budget(**job.budget), evaluator=evaluator, progress=False,
                             callbacks=[incumbents])
    search_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    test, train = task.split("test"), task.splits.get("train", ())
    table, cached = cache.score(evaluator, result.prompt, test, task, train)
    result.test_metrics = table.metrics(0)
    metric = primary_metric(task.kind)
    if task.kind == "generation":
        texts, decoded_cached = cache.texts(evaluator, result.prompt, test, task, train)
        predictions = generation_predictions(texts, test)
        result.test_metrics |= {"bleu": bleu_from_statistics(predictions["bleu_stats"]),
                                "rouge_l": float(np.mean(predictions["rouge_l"]))}
        metric, test_score, cached = "bleu", result.test_metrics["bleu"] / 100, cached and decoded_cached
    else:
        predictions, test_score = _predictions(table), result.test_metrics[metric]
    signature = ModelSignature(lm.name, lm.vocab_size, lm.hidden_size)
    checkpoints = []
    scored = incumbents.at(job.checkpoints, result.history) if task.kind != "generation" else []
    for fraction, step in scored:
        prompt = dataclasses.replace(step.prompt, model=signature)
        at, _ = cache.score(evaluator, prompt, test, task, train)
        checkpoints.append({"fraction": fraction, "step": step.step, "seconds": step.seconds,
                            "forward_passes": step.forward_passes, "test_score": at.metrics(0)[metric]})
    found = result.to_json(lm.decode)
    return {
        "task_kind": task.kind, "labels": list(task.labels), "metric": metric,
        "test_score": test_score, "dev_score": result.dev_score,
        "result": found, "test_predictions": predictions,
        "test_cached": cached, "test_scoring": vars(cache.stats), "checkpoints": checkpoints,
        "storage": {"trigger_ids": len(result.prompt.trigger_ids),
                    "soft_parameters": trained_parameters(found["prompt"]),
                    "model_parameters": n_parameters},
        "seconds": {"model_load": round(model_seconds, 3), "task_load": round(task_seconds, 3),
                    "search": round(search_seconds, 3), "test": round(time.perf_counter() - clock, 3)},
    }


def evaluator_options(job: Job) -> dict[str, Any]:
    """The job's Evaluator keyword arguments; ``demos`` becomes a Demonstrations seeded by the job."""
    options = dict(job.evaluator)
    if "demos" in options:
        options["demos"] = Demonstrations(**{"seed": job.seed, **options["demos"]})
    return options


@dataclasses.dataclass
class Snapshot:
    """The incumbent prompt right after a step (tensors copied: training goes on in place)."""

    step: int
    seconds: float
    forward_passes: int
    prompt: Prompt


class Incumbents:
    """A search callback that snapshots the best prompt whenever the best score changes."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self.snapshots: list[Snapshot] = []

    def __call__(self, record: StepRecord) -> None:
        if self.snapshots and record.best_score == self._score:
            return
        self._score = record.best_score
        self.snapshots.append(Snapshot(record.step, record.seconds, record.forward_passes,
                                       frozen_copy(self.searcher.best[0])))

    def at(self, fractions: tuple[float, ...], history: list[StepRecord]) -> list[tuple[float, Snapshot]]:
        """The snapshot in force at each fraction of the search's seconds (fractions before the
        first step are skipped: nothing had been found yet)."""
        if not history:
            return []
        total = history[-1].seconds
        out = []
        for fraction in fractions:
            before = [s for s in self.snapshots if s.seconds <= fraction * total]
            if before:
                out.append((fraction, before[-1]))
        return out


def frozen_copy(prompt: Prompt | EnsemblePrompt) -> Prompt | EnsemblePrompt:
    """``prompt`` with its tensors copied (an ensemble's members each), so training in place leaves it be."""
    if isinstance(prompt, EnsemblePrompt):
        return dataclasses.replace(prompt, members=tuple(frozen_copy(m) for m in prompt.members))
    copies = {name: getattr(prompt, name).detach().clone() for name in ("soft", "deep", "head")
              if getattr(prompt, name) is not None}
    return dataclasses.replace(prompt, **copies)


def _model(name: str, device: str) -> tuple[LanguageModel, int, float]:
    """The cached model, its parameter count and the seconds spent loading it now (0 when cached)."""
    key = (name, device)
    started = time.perf_counter()
    if key not in _MODELS:
        lm = load_model(name, device=device)
        _MODELS[key] = (lm, sum(p.numel() for p in lm.model.parameters()))
    lm, n_parameters = _MODELS[key]
    return lm, n_parameters, time.perf_counter() - started


def generation_predictions(texts: list[str], examples: Sequence[Example]) -> dict[str, Any]:
    """Per test input: the decoded text, its sacrebleu statistics (summed for corpus BLEU) and ROUGE-L."""
    references = [reference_texts(example) for example in examples]
    return {"texts": texts, "bleu_stats": bleu_statistics(texts, references),
            "rouge_l": rouge_l_scores(texts, references)}


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

