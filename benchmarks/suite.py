"""Leaderboard suites: a small YAML file → a list of independent, named jobs.

A suite crosses tasks × searchers × seeds on one model::

    model: smollm2-135m
    evaluator: {dtype: float32}          # Evaluator options shared by every job
    seeds: [13, 21, 42, 87, 100]
    baseline: manual                     # the row every other searcher is compared to
    task_defaults: {template: "{sentence} It was[P]"}
    tasks:
      - {name: SST-2, data: {lmbff: SST-2}, verbalizer: {"0": terrible, "1": great}}
    searchers:
      manual:
        budget: {iterations: 4}
        config: {templates: [$template], verbalizers: [$verbalizer]}
      label-search:
        tasks: [SST-2]                   # optional: only these tasks (default: all)
        budget: {iterations: 2}
        config: {templates: [$template]}

A searcher that only applies to some tasks (label-word search needs classification) lists them
under ``tasks``. A task entry names its data (see :mod:`benchmarks.tasks`) and any number of task variables
(``template``, ``verbalizer``, ...). A searcher's config is plain keyword arguments in which a
string ``$name`` stands for task variable ``name``: one config then serves every task, and a new
searcher joins the leaderboard by adding one entry under ``searchers``. Variables are resolved in
the worker, after the task is loaded, because some come from the data (LAMA's manual template).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autoprompt_search.searchers import SEARCHERS

SUITES_DIR = Path(__file__).resolve().parent / "suites"
BUDGET_KEYS = ("iterations", "forward_passes", "seconds")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_SUITE_KEYS = {"model", "device", "evaluator", "seeds", "baseline", "task_defaults", "tasks", "searchers",
               "description"}


class SuiteError(ValueError):
    """A suite file that cannot be expanded; the message names the file and the field."""


@dataclass(frozen=True)
class Job:
    """One search: a task (its YAML entry) × a searcher (name, unresolved config, budget) × a seed.

    Plain data only, so a job pickles cheaply to a loky or Dask worker.
    """

    suite: str
    task: dict[str, Any]
    task_index: int
    searcher: str
    config: dict[str, Any]
    budget: dict[str, Any]
    seed: int
    model: str
    device: str = "auto"
    evaluator: dict[str, Any] = field(default_factory=dict)
    baseline: str = "manual"

    @property
    def task_name(self) -> str:
        return str(self.task["name"])

    @property
    def id(self) -> str:
        """File-name-safe and unique within a suite: ``<task>__<searcher>__seed<seed>``."""
        return f"{self.task_name}__{self.searcher}__seed{self.seed}"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    baseline: str
    searchers: tuple[str, ...]
    jobs: tuple[Job, ...]


def suite_path(name_or_path: str | Path) -> Path:
    """An existing YAML file, or the suite of that name in ``benchmarks/suites/``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    named = SUITES_DIR / f"{name_or_path}.yaml"
    if not named.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml")))
        raise SuiteError(f"no suite {str(name_or_path)!r}: give a YAML file or one of {known}")
    return named


def load_suite(name_or_path: str | Path) -> Suite:
    """Read and check a suite file and expand it into jobs (task order, then searcher, then seed)."""
    path = suite_path(name_or_path)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    where = str(path)
    if not isinstance(spec, dict):
        raise SuiteError(f"{where}: a suite is a YAML mapping with tasks, searchers, seeds and model")
    if unknown := sorted(set(spec) - _SUITE_KEYS):
        raise SuiteError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_SUITE_KEYS))}")
    for key in ("model", "seeds", "tasks", "searchers"):
        if not spec.get(key):
            raise SuiteError(f"{where}: missing or empty {key!r}")
    seeds = spec["seeds"]
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise SuiteError(f"{where}: 'seeds' must be a list of distinct integers, got {seeds!r}")
    searchers = _searchers(spec["searchers"], where)
    baseline = spec.get("baseline", "manual")
    if baseline not in searchers:
        raise SuiteError(f"{where}: baseline {baseline!r} is not one of the suite's searchers {sorted(searchers)}")
    tasks = _tasks(spec["tasks"], spec.get("task_defaults") or {}, where)
    names = {task["name"] for task in tasks}
    for name, entry in searchers.items():
        if entry.get("tasks") is not None and (not isinstance(entry["tasks"], list) or set(entry["tasks"]) - names):
            raise SuiteError(f"{where}: searchers.{name}.tasks must list task names of this suite: {entry['tasks']}")
    jobs = tuple(
        Job(path.stem, task, index, name, entry.get("config") or {}, entry.get("budget") or {}, seed,
            str(spec["model"]), str(spec.get("device", "auto")), dict(spec.get("evaluator") or {}), baseline)
        for index, task in enumerate(tasks)
        for name, entry in searchers.items()
        if entry.get("tasks") is None or task["name"] in entry["tasks"]
        for seed in seeds
    )
    return Suite(path.stem, path, baseline, tuple(searchers), jobs)


def _searchers(entries: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(entries, dict):
        raise SuiteError(f"{where}: 'searchers' maps a registered searcher name to {{config, budget}}")
    for name, entry in entries.items():
        if name not in SEARCHERS:
            raise SuiteError(f"{where}: unknown searcher {name!r}; registered: {', '.join(sorted(SEARCHERS))}")
        entry = entry or {}
        if not isinstance(entry, dict) or set(entry) - {"config", "budget", "tasks"}:
            raise SuiteError(f"{where}: searchers.{name} takes only 'config', 'budget' and 'tasks'")
        if set(entry.get("budget") or {}) - set(BUDGET_KEYS) or not (entry.get("budget") or {}):
            raise SuiteError(f"{where}: searchers.{name}.budget needs some of {', '.join(BUDGET_KEYS)} and no others")
        if "seed" in (entry.get("config") or {}):
            raise SuiteError(f"{where}: searchers.{name}.config must not set 'seed'; seeds come from 'seeds'")
        entries[name] = entry
    return entries


def _tasks(entries: Any, defaults: dict[str, Any], where: str) -> list[dict[str, Any]]:
    if not isinstance(entries, list) or not all(isinstance(t, dict) for t in entries):
        raise SuiteError(f"{where}: 'tasks' is a list of mappings with at least 'name' and 'data'")
    tasks = [{**defaults, **entry} for entry in entries]
    names = [str(t.get("name", "")) for t in tasks]
    for name, task in zip(names, tasks, strict=True):
        if not _SAFE_NAME.fullmatch(name) or "__" in name:
            raise SuiteError(f"{where}: task name {name!r} must be letters, digits, '_', '.', '+', '-' (no '__')")
        if not isinstance(task.get("data"), dict):
            raise SuiteError(f"{where}: task {name!r} needs 'data', e.g. {{lmbff: SST-2}} or {{demo: sentiment}}")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise SuiteError(f"{where}: task names must be unique; repeated: {repeated}")
    return tasks


def resolve_config(config: Any, variables: dict[str, Any]) -> Any:
    """Replace every string ``$name`` (also inside lists and mappings) by task variable ``name``."""
    if isinstance(config, str) and config.startswith("$"):
        name = config[1:]
        if name not in variables:
            raise SuiteError(f"searcher config refers to ${name} but the task has no variable {name!r} "
                             f"(it has {', '.join(sorted(variables))}); add it to the task or task_defaults")
        return variables[name]
    if isinstance(config, list):
        return [resolve_config(item, variables) for item in config]
    if isinstance(config, dict):
        return {key: resolve_config(value, variables) for key, value in config.items()}
    return config
