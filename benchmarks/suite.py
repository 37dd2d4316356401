"""Leaderboard suites: a small YAML file → a list of independent, named jobs.

A suite crosses tasks × searchers × seeds on one model::

    model: smollm2-135m
    evaluator: {dtype: float32}          # Evaluator options shared by every job
    seeds: [13, 21, 42, 87, 100]
    baseline: manual                     # the row every other searcher is compared to
    also_against: [manual+demos]         # optional: more reference rows, each with its own delta table
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

An entry's key is its row on the leaderboard. A *variant* of a searcher is one more entry that
names the registered searcher it runs (``searcher``; by default the entry's key when that is a
registered name, else the base's) and/or the entry it starts from (``base``: its config and
evaluator options are merged, the entry's own win; budget and tasks are inherited unless given),
with its own ``evaluator`` options on top of the suite's::

      autoprompt-class: {base: autoprompt, config: {objective: class}}
      manual+calib: {base: manual, evaluator: {calibration: contextual}}
      manual+demos: {base: manual, evaluator: {demos: {k: 1, selection: similar}}}

Evaluator options are the :class:`~autoprompt_search.Evaluator`'s; ``demos`` is a mapping of
:class:`~autoprompt_search.Demonstrations` fields whose ``seed`` defaults to the job's seed.
``checkpoints`` (suite level, default ``[0.125, 0.25, 0.5]``) are the fractions of each search's
seconds at which the then-best prompt is also scored on test, for the time-to-quality plot.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autoprompt_search.searchers import SEARCHERS

SUITES_DIR = Path(__file__).resolve().parent / "suites"
BUDGET_KEYS = ("iterations", "forward_passes", "seconds")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_SUITE_KEYS = {"model", "device", "evaluator", "seeds", "baseline", "also_against", "task_defaults", "tasks",
               "searchers", "description", "checkpoints"}
_ENTRY_KEYS = {"config", "budget", "tasks", "searcher", "base", "evaluator"}
#: Evaluator options a suite may set (the ones that change what is scored, plus dtype and batching).
EVALUATOR_KEYS = {"dtype", "calibration", "demos", "fact_match", "normalize", "batch_tokens", "reuse_prefix"}
DEFAULT_CHECKPOINTS = (0.125, 0.25, 0.5)


class SuiteError(ValueError):
    """A suite file that cannot be expanded; the message names the file and the field."""


@dataclass(frozen=True)
class Job:
    """One search: a task (its YAML entry) × a searcher entry (row name, registered searcher
    ``method``, unresolved config, budget, evaluator options) × a seed.

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
    method: str = ""  # the registered searcher; "" means the same as ``searcher``
    checkpoints: tuple[float, ...] = DEFAULT_CHECKPOINTS
    also_against: tuple[str, ...] = ()  # report only: the results do not depend on it

    @property
    def searcher_class(self) -> str:
        return self.method or self.searcher

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
    also_against: tuple[str, ...] = ()  # report only: rows every row is also compared with


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
    also = spec.get("also_against") or []
    if not isinstance(also, list) or set(also) - set(searchers) or baseline in also:
        raise SuiteError(f"{where}: 'also_against' lists other rows of the suite to compare with, got {also!r}")
    tasks = _tasks(spec["tasks"], spec.get("task_defaults") or {}, where)
    names = {task["name"] for task in tasks}
    for name, entry in searchers.items():
        if entry.get("tasks") is not None and (not isinstance(entry["tasks"], list) or set(entry["tasks"]) - names):
            raise SuiteError(f"{where}: searchers.{name}.tasks must list task names of this suite: {entry['tasks']}")
    checkpoints = spec.get("checkpoints", list(DEFAULT_CHECKPOINTS))
    if not isinstance(checkpoints, list) or not all(isinstance(f, int | float) and 0 < f < 1 for f in checkpoints):
        raise SuiteError(f"{where}: 'checkpoints' is a list of fractions between 0 and 1, got {checkpoints!r}")
    shared = _evaluator_options(spec.get("evaluator") or {}, f"{where}: evaluator")
    jobs = tuple(
        Job(path.stem, task, index, name, entry.get("config") or {}, entry.get("budget") or {}, seed,
            str(spec["model"]), str(spec.get("device", "auto")), {**shared, **entry["evaluator"]}, baseline,
            entry["searcher"], tuple(float(f) for f in checkpoints), tuple(also))
        for index, task in enumerate(tasks)
        for name, entry in searchers.items()
        if entry.get("tasks") is None or task["name"] in entry["tasks"]
        for seed in seeds
    )
    return Suite(path.stem, path, baseline, tuple(searchers), jobs, tuple(also))


def _searchers(entries: Any, where: str) -> dict[str, dict[str, Any]]:
    """Each entry checked and completed: ``searcher`` set, ``base`` merged in, ``evaluator`` a dict."""
    if not isinstance(entries, dict):
        raise SuiteError(f"{where}: 'searchers' maps a row name to {{searcher, base, config, budget, evaluator}}")
    resolved: dict[str, dict[str, Any]] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        if name in resolved:
            return resolved[name]
        entry = entries[name] or {}
        if not _SAFE_NAME.fullmatch(str(name)) or "__" in str(name):
            raise SuiteError(f"{where}: searcher row name {name!r} must be letters, digits, '_', '.', '+', '-' "
                             "(no '__')")
        if not isinstance(entry, dict) or set(entry) - _ENTRY_KEYS:
            raise SuiteError(f"{where}: searchers.{name} takes only {', '.join(sorted(_ENTRY_KEYS))}")
        merged = dict(entry)
        if "base" in entry:
            base = entry["base"]
            if base not in entries or base in chain:
                raise SuiteError(f"{where}: searchers.{name}.base {base!r} must name another entry (no cycles)")
            parent = resolve(base, (*chain, name))
            merged = {"searcher": name if name in SEARCHERS else parent["searcher"], "budget": parent.get("budget"),
                      "tasks": parent.get("tasks"),
                      **{k: v for k, v in entry.items() if k != "base"},
                      "config": {**(parent.get("config") or {}), **(entry.get("config") or {})},
                      "evaluator": {**parent["evaluator"], **(entry.get("evaluator") or {})}}
        merged.setdefault("searcher", name)
        if merged["searcher"] not in SEARCHERS:
            raise SuiteError(f"{where}: unknown searcher {merged['searcher']!r} (searchers.{name}); "
                             f"registered: {', '.join(sorted(SEARCHERS))}")
        if set(merged.get("budget") or {}) - set(BUDGET_KEYS) or not (merged.get("budget") or {}):
            raise SuiteError(f"{where}: searchers.{name}.budget needs some of {', '.join(BUDGET_KEYS)} and no others")
        if "seed" in (merged.get("config") or {}):
            raise SuiteError(f"{where}: searchers.{name}.config must not set 'seed'; seeds come from 'seeds'")
        merged["evaluator"] = _evaluator_options(merged.get("evaluator") or {}, f"{where}: searchers.{name}.evaluator")
        resolved[name] = merged
        return merged

    return {name: resolve(name, ()) for name in entries}


def _evaluator_options(options: Any, where: str) -> dict[str, Any]:
    if not isinstance(options, dict) or set(options) - EVALUATOR_KEYS:
        raise SuiteError(f"{where} takes Evaluator options only: {', '.join(sorted(EVALUATOR_KEYS))}; got {options!r}")
    if "demos" in options and not isinstance(options["demos"], dict):
        raise SuiteError(f"{where}.demos is a mapping of Demonstrations fields, e.g. {{k: 1, selection: random}}")
    return dict(options)


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


def job_spec(job: dict[str, Any]) -> dict[str, Any]:
    """What a job's result depends on, as JSON data: the fields older records lack get their
    defaults, and of the task entry only the name, the data and the variables the config refers to
    (adding a variable for another searcher does not invalidate this one's records)."""
    spec = json.loads(json.dumps(job))
    spec["method"] = spec.get("method") or spec.get("searcher")
    spec.setdefault("checkpoints", list(DEFAULT_CHECKPOINTS))
    used = referenced_variables(spec.get("config"))
    spec["task"] = {k: v for k, v in (spec.get("task") or {}).items() if k in ("name", "data") or k in used}
    spec.pop("task_index", None)
    spec.pop("also_against", None)  # which rows the report compares with changes no result
    return spec


def same_job(recorded: dict[str, Any], job: Job) -> bool:
    """Whether a record's job spec is ``job`` in all that its result depends on (:func:`job_spec`)."""
    return job_spec(recorded) == job_spec(asdict(job))


def referenced_variables(config: Any) -> set[str]:
    """The task variables a config refers to (``$name`` strings, also inside lists and mappings)."""
    if isinstance(config, str) and config.startswith("$"):
        return {config[1:]}
    items = config.values() if isinstance(config, dict) else config if isinstance(config, list) else ()
    return set().union(*(referenced_variables(item) for item in items))


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
