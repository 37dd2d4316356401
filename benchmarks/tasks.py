"""Benchmark data → :class:`Task`: the few data layouts the suites use, by a one-key ``data`` entry.

=============================  ==================================================================
``{demo: sentiment}``          a demo task shipped in the package (no data directory needed)
``{lmbff: SST-2, k: 16}``      LM-BFF's k-shot split ``<task>/k-shot/<k>-<seed>`` (seed = job seed)
``{lama: P19}``                a LAMA T-REx relation; adds variables from LAMA's manual template
                               (see :func:`lama_variables`)
``{folder: CB/FewGLUE_32dev}`` a folder of train/dev/test files (fixed split; the seed only seeds
                               the searcher)
``{sick: SICK-E/SICK.txt}``    SICK's release file: k per label sampled from TRAIN (train) and
                               TRIAL (dev) with the job seed, the whole TEST split as test
``{sst2_full: 200}``           full-data SST-2: GLUE train minus a held-apart selection slice of
                               200 full sentences (dev), test = GLUE dev (:mod:`benchmarks.sst_full`)
``{e2e: 200, dev: 50}``        E2E low-data (``autoprompt_search.data.e2e.load_e2e``): 200 training and
                               50 dev MRs drawn from devset with the job seed, testset_w_refs as
                               test (``test_limit: N``: its first N MRs)
=============================  ==================================================================

Any of them takes ``limit: N`` to keep only the first N examples of every split (the CI smoke
suite, which checks that searchers run, not how well), or ``limit: {dev: 200}`` for some splits
only (a shorter selection split, e.g. LAMA's dev facts), and ``test_from: {lmbff: mr}`` (another
data entry) to test on that data's test split instead: a carry-over measurement, where the prompt
is searched on one data set and scored on another with the same labels and fields, which the
search never saw (as a user would apply a found prompt to their own data).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoprompt_search.data.demo_tasks import load_demo
from autoprompt_search.data.e2e import load_e2e
from autoprompt_search.data.loaders import lama_manual_template, load_lama, load_lmbff, load_task
from autoprompt_search.data.readers import iter_records
from autoprompt_search.data.tasks import Example, Task, k_shot

from .sst_full import load_sst2_full
from .suite import SuiteError

#: SICK's SemEval_set values → split names.
SICK_SPLITS = {"TRAIN": "train", "TRIAL": "dev", "TEST": "test"}


def load_benchmark_task(
    entry: dict[str, Any], seed: int, data_dir: Callable[[], Path]
) -> tuple[Task, dict[str, Any]]:
    """The task of a suite entry and its variables (loader-provided ones, overridden by the entry's).

    ``data_dir`` is called only by loaders that read the benchmark data, so demo suites run
    without it (CI's smoke suite).
    """
    spec = dict(entry["data"])
    kinds = sorted(set(spec) & set(LOADERS))
    if len(kinds) != 1:
        raise SuiteError(f"task {entry['name']!r}: 'data' needs exactly one of {', '.join(LOADERS)}, got {spec}")
    kind = kinds[0]
    task, provided = LOADERS[kind](spec, seed, data_dir)
    variables = {**provided, **{k: v for k, v in entry.items() if k not in ("name", "data")}}
    if kind == "lama":  # derived from the final manual template, which the suite may rephrase
        variables = {**lama_variables(variables["template"]), **variables}
    limits = spec.get("limit")
    if limits is not None and not isinstance(limits, dict):
        limits = {name: limits for name in task.splits}
    splits = {k: v[: int(limits[k])] if limits and k in limits else v for k, v in task.splits.items()}
    if "test_from" in spec:
        splits["test"] = _carry_over_test(entry, task, spec["test_from"], seed, data_dir)
    return Task(str(entry["name"]), task.kind, splits, task.labels, task.fields), variables


def _carry_over_test(entry: dict[str, Any], task: Task, data: Any, seed: int,
                     data_dir: Callable[[], Path]) -> list[Example]:
    """The test split of another data entry, checked to have the searched task's labels and fields."""
    if not isinstance(data, dict) or "test_from" in data:
        raise SuiteError(f"task {entry['name']!r}: test_from is one data entry (e.g. {{lmbff: mr}}), got {data!r}")
    other, _ = load_benchmark_task({"name": entry["name"], "data": data}, seed, data_dir)
    if (other.kind, set(other.labels), set(other.fields)) != (task.kind, set(task.labels), set(task.fields)):
        raise SuiteError(
            f"task {entry['name']!r}: test_from {data} has labels {list(other.labels)} and fields "
            f"{list(other.fields)}, the searched data {list(task.labels)} and {list(task.fields)}: a carry-over "
            "test needs the same ones")
    if not other.has_split("test"):
        raise SuiteError(f"task {entry['name']!r}: test_from {data} has no test split")
    return list(other.split("test"))


def lama_variables(template: str) -> dict[str, str]:
    """Variables a LAMA suite builds prompts from, given the manual ``template`` (``head`` up to the
    subject, then the relation ``phrase``, then ``[P]``): ``trigger_template``/``soft_template``
    put one ``[T]``/``[V]`` slot per word of the phrase where the phrase was, and
    ``trigger_init``/``soft_init`` start them from the phrase (AutoPrompt's and P-tuning's
    initialisation from the manual prompt)."""
    head, subject, rest = template.partition("{sub_label}")
    phrase = rest.partition("[P]")[0]
    if not subject or not rest.endswith("[P]"):
        raise SuiteError(f"LAMA template {template!r} must contain {{sub_label}} and end with [P]")
    slots = max(1, len(phrase.split()))
    return {"trigger_template": f"{head}{{sub_label}}[T*{slots}][P]",
            "soft_template": f"{head}{{sub_label}}[V*{slots}][P]",
            "trigger_init": phrase if phrase.strip() else " the",
            "soft_init": f"text:{phrase}" if phrase.strip() else "vocab"}


def _demo(spec: dict[str, Any], seed: int, data_dir: Callable[[], Path]) -> tuple[Task, dict[str, Any]]:
    return load_demo(spec["demo"]), {}


def _lmbff(spec: dict[str, Any], seed: int, data_dir: Callable[[], Path]) -> tuple[Task, dict[str, Any]]:
    return load_lmbff(data_dir(), spec["lmbff"], k=int(spec.get("k", 16)), seed=seed), {}


def _lama(spec: dict[str, Any], seed: int, data_dir: Callable[[], Path]) -> tuple[Task, dict[str, Any]]:
    """The relation and its manual template with no space before ``[P]``: the answer's BPE leading
    space belongs to the answer token, as the model would write it (README, Templates)."""
    root = data_dir()
    template = lama_manual_template(root, spec["lama"]).replace(" [P]", "[P]")
    return load_lama(root, spec["lama"]), {"template": template}


def _folder(spec: dict[str, Any], seed: int, data_dir: Callable[[], Path]) -> tuple[Task, dict[str, Any]]:
    return load_task(data_dir() / spec["folder"]), {}


def _sick(spec: dict[str, Any], seed: int, data_dir: Callable[[], Path]) -> tuple[Task, dict[str, Any]]:
    """SICK-E as a pair task with fields ``sentence1``/``sentence2`` (GLUE names, as in RTE)."""
    path = data_dir() / spec["sick"]
    splits: dict[str, list[Example]] = {name: [] for name in SICK_SPLITS.values()}
    for _, record in iter_records(path):
        fields = {"sentence1": str(record["sentence_A"]).strip(), "sentence2": str(record["sentence_B"]).strip()}
        example = Example(fields, str(record["entailment_label"]).strip())
        splits[SICK_SPLITS[str(record["SemEval_set"]).strip()]].append(example)
    k = int(spec.get("k", 16))
    few = {"train": k_shot(splits["train"], k, seed=seed), "dev": k_shot(splits["dev"], k, seed=seed),
           "test": splits["test"]}
    labels = tuple(sorted({e.label for e in splits["test"] if e.label}))
    return Task("SICK-E", "classification", few, labels, ("sentence1", "sentence2")), {}


def _e2e(spec: dict[str, Any], seed: int, data_dir: Callable[[], Path]) -> tuple[Task, dict[str, Any]]:
    limit = spec.get("test_limit")
    return load_e2e(data_dir(), train=int(spec["e2e"]), dev=int(spec.get("dev", 50)), seed=seed,
                    test_limit=None if limit is None else int(limit)), {}


LOADERS: dict[str, Callable[[dict[str, Any], int, Callable[[], Path]], tuple[Task, dict[str, Any]]]] = {
    "demo": _demo, "lmbff": _lmbff, "lama": _lama, "folder": _folder, "sick": _sick, "e2e": _e2e,
    "sst2_full": lambda spec, seed, data_dir: (load_sst2_full(data_dir(), int(spec["sst2_full"]), seed), {}),
}
