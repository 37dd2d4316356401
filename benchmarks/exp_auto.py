"""The ``auto`` searcher (and the filter with calibration choice + ensembles) vs the manual template
on SST-2 16-shot (LM-BFF splits), SmolLM2-135M, fp32. Test is scored once, after the search, never
used for selection.

Methods: ``manual`` (the given template, uncalibrated), ``auto`` (defaults; budget ``--seconds``),
``filter-ens5`` / ``filter-ens10`` (filter over the built-in grammar + manual template, calibration
as a dimension, select on train ∪ dev, top-k mean ensemble). Each (method, seed) writes
``results/auto/<method>-<seed>.json`` atomically and is skipped when present, so a killed run resumes.

    python -m benchmarks.exp_auto [--seeds 13,42] [--methods manual,auto,filter-ens5] [--seconds 600]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from autoprompt_search import Budget, Evaluator, atomic, load_model
from autoprompt_search.data.loaders import load_lmbff
from autoprompt_search.data.tasks import Task
from autoprompt_search.searchers import SEARCHERS

from .common import RESULTS, data_dir, environment

OUT = RESULTS / "auto"
TEMPLATE, WORDS = "Review: {sentence}\nSentiment:[P]", {"0": "negative", "1": "positive"}
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "manual": ("manual", {"calibrate": "off"}),
    "auto": ("auto", {}),
    "filter-ens5": ("filter", {"ensemble": 5, "select_on": "all", "finalists": 10}),
    "filter-ens10": ("filter", {"ensemble": 10, "select_on": "all", "finalists": 10}),
}


def run(method: str, seed: int, lm, seconds: float) -> dict[str, Any]:
    task = load_lmbff(data_dir(None), "SST-2", seed=seed)
    searchable = Task(task.name, task.kind, {k: v for k, v in task.splits.items() if k != "test"}, task.labels,
                      task.fields)
    name, options = METHODS[method]
    searcher = SEARCHERS[name](templates=[TEMPLATE], verbalizers=[WORDS], seed=seed, **options)
    evaluator = Evaluator(lm)
    started = time.perf_counter()
    result = searcher.search(searchable, lm, budget=Budget(seconds=seconds), evaluator=evaluator, progress=True)
    search_seconds = time.perf_counter() - started
    started = time.perf_counter()
    table = evaluator.score([result.prompt], task.split("test"), task)
    test_seconds = time.perf_counter() - started
    dev = evaluator.evaluate(result.prompt, task.split("dev"), task)
    return {"method": method, "seed": seed, "searcher": name, "options": options, "budget_seconds": seconds,
            "prompt": result.prompt.render(lm.decode), "selection_split": result.selection_split,
            "selection": result.selection, "select_metrics": result.dev_metrics, "dev_metrics": dev,
            "test_metrics": table.metrics(0), "test_pred": table.scores[0].argmax(1).tolist(),
            "test_gold": table.gold.tolist(), "search_seconds": round(search_seconds, 1),
            "test_seconds": round(test_seconds, 1), "forward_passes": result.history[-1].forward_passes
            if result.history else 0, "environment": environment("float32")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="13,42")
    parser.add_argument("--methods", default="manual,auto")
    parser.add_argument("--seconds", type=float, default=600.0, help="search budget per run (default 600)")
    args = parser.parse_args(argv)
    lm = load_model("smollm2-135m")
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in args.methods.split(","):
            path = OUT / f"{method}-{seed}.json"
            if path.is_file():
                continue
            record = run(method, seed, lm, args.seconds)
            atomic.write_json(path, record)
            print(json.dumps({k: record[k] for k in ("method", "seed", "prompt", "search_seconds")}),
                  json.dumps({"test_acc": record["test_metrics"]["accuracy"],
                              "dev_acc": record["dev_metrics"]["accuracy"]}), flush=True)
    _table()
    return 0


def _table() -> None:
    rows = [json.loads(p.read_text()) for p in sorted(OUT.glob("*-*.json"))]
    for r in rows:
        manual = OUT / f"manual-{r['seed']}.json"
        delta = ""
        if manual.is_file() and r["method"] != "manual":
            m = json.loads(manual.read_text())
            delta = f" Δ {100 * (r['test_metrics']['accuracy'] - m['test_metrics']['accuracy']):+.1f}"
        print(f"{r['method']:>13} seed {r['seed']:>3}: test {100 * r['test_metrics']['accuracy']:.1f}{delta} "
              f"dev {100 * r['dev_metrics']['accuracy']:.1f} search {r['search_seconds']} s")


if __name__ == "__main__":
    raise SystemExit(main())
