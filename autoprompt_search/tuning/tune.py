"""Tune any registered searcher's hyperparameters with Optuna.

Each trial runs one whole inner search (``SEARCHERS[name]`` with the base options and the sampled
ones) and its objective is that search's selection score on dev — the same number the searcher
itself maximises, never a test score. The inner search's best-so-far after each of its steps goes
to the pruner, so ``pruner="median"`` stops inner searches that trail the others at the same step.

The study is shared like the Optuna searcher's (memory, SQLite, PostgreSQL): several workers —
each with its own ``out`` folder — tune one study together. A worker is resumed by running it again
with the same ``out`` and storage: it counts the trials it finished there, marks the one a kill
interrupted as failed, and runs the rest. Every trial's run directory is ``out/trial-NNNN``, so the
best trial's ``prompt.json`` is on disk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from .. import atomic
from ..data.tasks import Task
from ..errors import AutopromptError, StudyError
from ..models.language_model import LanguageModel
from ..scoring.evaluator import Evaluator
from ..searchers import SEARCHERS, Budget, StepRecord
from ..searchers.config import check_options
from ..searchers.studies import open_study, parse_space, tpe_sampler


@dataclass
class TuneResult:
    """The best options found, their dev score, the best trial's run directory, and every trial."""

    searcher: str
    best_params: dict[str, Any]
    best_value: float
    best_run: str | None
    trials: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def tune(
    searcher: str,
    space: Mapping[str, Any],
    task: Task,
    model: LanguageModel,
    *,
    config: Mapping[str, Any] | None = None,
    trials: int = 20,
    budget: Budget | None = None,
    storage: str | None = None,
    study: str = "autoprompt-tune",
    pruner: Literal["none", "median"] = "none",
    startup_trials: int = 5,
    seed: int = 0,
    evaluator: Evaluator | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> TuneResult:
    """Run ``trials`` inner searches of ``searcher`` with options drawn from ``space`` (JSON, see
    :data:`studies.SPACE_HELP`) on top of ``config``; each inner search gets ``budget``."""
    if searcher not in SEARCHERS:
        raise StudyError(f"unknown searcher {searcher!r} to tune: use one of {', '.join(sorted(SEARCHERS))}")
    if pruner not in ("none", "median") or trials < 1:
        raise StudyError(f"tune needs trials >= 1 and pruner 'none' or 'median', got {trials} and {pruner!r}")
    distributions = parse_space(space)
    base = dict(config or {})
    check_options(searcher, SEARCHERS[searcher], {**base, **{name: None for name in distributions}})
    evaluator = evaluator or Evaluator(model)
    out = Path(out).resolve() if out is not None else None
    worker = str(out) if out is not None else ""
    median = optuna.pruners.MedianPruner(n_startup_trials=startup_trials)
    opened = open_study(storage, study, pruner=median if pruner == "median" else optuna.pruners.NopPruner())
    done = _resume_worker(opened, worker) if worker else 0
    rng = np.random.default_rng(seed)
    seeds = rng.integers(2**31, size=trials)  # one sampler seed per trial of this worker: a rerun draws the same
    for k in tqdm(range(done, trials), initial=done, total=trials, desc=f"tune {searcher}", disable=not progress):
        opened.sampler = tpe_sampler(int(seeds[k]), startup_trials)
        trial = opened.ask(distributions)
        trial.set_user_attr("worker", worker)
        run_dir = out / f"trial-{trial.number:04d}" if out is not None else None
        trial.set_user_attr("run_dir", str(run_dir) if run_dir else None)
        state, value = _run_trial(trial, searcher, {**base, **trial.params}, task, model, evaluator, budget,
                                  run_dir, seed)
        opened.tell(trial, value, state=state)
    result = _summary(opened, searcher)
    if out is not None:
        atomic.write_json(out / "tune.json", result.to_json())
    return result


def _run_trial(
    trial: optuna.Trial, searcher: str, options: dict[str, Any], task: Task, model: LanguageModel,
    evaluator: Evaluator, budget: Budget | None, run_dir: Path | None, seed: int,
) -> tuple[TrialState, float | None]:
    """One inner search; its step-by-step best score feeds the pruner."""
    def report(record: StepRecord) -> None:
        trial.report(record.best_score, record.step)
        if trial.should_prune():
            raise optuna.TrialPruned

    try:
        inner = SEARCHERS[searcher](seed=seed, **options)
        result = inner.search(task, model, budget=budget, evaluator=evaluator, callbacks=[report],
                              run_dir=run_dir, progress=False)
    except optuna.TrialPruned:
        return TrialState.PRUNED, None
    except AutopromptError as error:  # options that the searcher refuses: a failed trial, not a failed tuning
        trial.set_user_attr("error", str(error))
        return TrialState.FAIL, None
    trial.set_user_attr("dev_metrics", result.dev_metrics)
    return TrialState.COMPLETE, result.dev_score


def _resume_worker(study: optuna.Study, worker: str) -> int:
    """Trials this worker finished before; the one it left running (killed) is marked failed."""
    finished = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("worker") != worker:
            continue
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        finished += 1
    return finished


def _summary(study: optuna.Study, searcher: str) -> TuneResult:
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "run_dir": t.user_attrs.get("run_dir"), "error": t.user_attrs.get("error")}
            for t in study.get_trials(deepcopy=False)]
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        raise StudyError(f"no tuning trial of {searcher!r} finished (errors: "
                         f"{sorted({r['error'] for r in rows if r['error']})}): fix the space or the base options")
    best = max(complete, key=lambda t: (t.value, -t.number))
    return TuneResult(searcher, best.params, float(best.value), best.user_attrs.get("run_dir"), rows)
