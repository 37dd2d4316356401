"""Template filtering vs manual templates on SST-2, MR, CR and TREC (LM-BFF 16-shot), SmolLM2, fp32.

Per task and LM-BFF seed (13, 21, 42, 87, 100) the filter searcher (``--searcher filter``: the
built-in grammar's templates plus the manual one, crossed with the manual label words and one
LM-BFF-found set, one mutation round, successive halving on train, top 4 on dev) is compared with
the manual template on the task's LM-BFF test.tsv, in up to four variants: plain, with contextual
calibration, with in-context demonstrations, with both (the last three need the Evaluator options
of the calibration work; on a checkout without them those variants are skipped and say so).
The ablation (``--part ablation``) runs the same search scoring every candidate on all training
examples instead of halving, and records both winners and forward passes.

Each run writes ``results/templates/<run>.json`` (``--out``) (skipped when present, so a killed run resumes;
the search itself checkpoints to ``results/templates/runs/<run>/``); ``README.md`` tabulates them.

    python -m benchmarks.exp_templates [--part main|ablation|all|table] [--tasks SST-2,mr,cr,trec]
        [--seeds 13,21,42,87,100] [--variants base,calib,demos,calib+demos] [--test-limit N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from autoprompt_search import Budget, Evaluator, Prompt, atomic, load_model
from autoprompt_search.data.loaders import load_lmbff
from autoprompt_search.data.tasks import Task
from autoprompt_search.searchers.filtering import FilterSearcher

from .common import RESULTS, data_dir, environment

OUT = RESULTS / "templates"
SEEDS = (13, 21, 42, 87, 100)
SENTIMENT = ("Review: {sentence}\nSentiment:[P]", {"0": "negative", "1": "positive"})
#: The manual templates (one word per class); TREC's classes are LM-BFF's order: DESC, ENTY, ABBR, HUM, LOC, NUM.
MANUAL: dict[str, tuple[str, dict[str, str]]] = {
    "SST-2": SENTIMENT,
    "mr": SENTIMENT,
    "cr": SENTIMENT,
    "trec": ("Question: {sentence}\nAnswer type:[P]",
             {"0": "description", "1": "entity", "2": "abbreviation", "3": "person", "4": "location", "5": "number"}),
}
#: The search: ~78 candidates (26 templates x 3 label-word sets) halved from 4 training examples up, ~1,300
#: search forward passes on SST-2, plus ~600 for the mutation round and the dev final.
SEARCH = {"builtin": True, "label_words": 2, "label_top_k": 8, "generate": 4, "mutations": 6, "mutation_rounds": 1,
          "first_slice": 4, "keep": 0.5, "finalists": 4}
VARIANTS = ("base", "calib", "demos", "calib+demos")
CACHE = "test-cache.json"


def evaluator_options(variant: str, seed: int = 0) -> dict[str, Any] | None:
    """Evaluator keyword arguments for a variant, or None where this checkout's Evaluator lacks them."""
    fields = {f.name for f in dataclasses.fields(Evaluator)}
    options: dict[str, Any] = {}
    if "calib" in variant:
        options["calibration"] = "contextual"  # Zhao et al. 2021
    if "demos" in variant:
        if "demos" not in fields:
            return None
        from autoprompt_search.prompts.demonstrations import Demonstrations  # only with the calibration work merged

        options["demos"] = Demonstrations(k=1, seed=seed)  # LM-BFF: one demonstration per class, from train
    return options if set(options) <= fields else None


def load(root: Path, name: str, seed: int, test_limit: int | None) -> Task:
    task = load_lmbff(root, name, seed=seed)
    if test_limit is None:
        return task
    test = task.split("test")
    keep = sorted(np.random.default_rng(0).permutation(len(test))[:test_limit])  # the same subset for every run
    return task.with_splits(test=[test[int(i)] for i in keep])


def run_one(lm, root: Path, out: Path, name: str, seed: int, variant: str, *, halving: bool,
            test_limit: int | None) -> dict | None:
    run = f"{name}-{seed}-{variant}" + ("" if halving else "-nohalving")
    path = out / f"{run}.json"
    if path.exists():
        return json.loads(path.read_text())
    options = evaluator_options(variant, seed)
    if options is None:
        print(f"{run}: skipped, this checkout's Evaluator has no option for {variant!r} (a no-op until it lands)")
        return None
    started = time.perf_counter()
    task = load(root, name, seed, test_limit)
    template, words = MANUAL[name]
    evaluator = Evaluator(lm, **options)
    searcher = FilterSearcher(templates=[template], verbalizers=[words], halving=halving, seed=seed, **SEARCH)
    # Test is scored below, through the cache: the search never sees it.
    result = searcher.search(task.with_splits(test=[]), lm, budget=Budget(), evaluator=evaluator,
                             run_dir=out / "runs" / run, resume=True, progress=True)
    manual = Prompt.build(template, words)
    # Without demonstrations a prompt's test score does not depend on the seed's training data.
    scope = f"{name}|{variant}|{seed if 'demos' in variant else '-'}|{test_limit}"
    rungs = [r for r in result.history if r.note.startswith("rung")]
    data = {"run": run, "task": name, "seed": seed, "variant": variant, "halving": halving, "manual": template,
            "manual_words": words, "found": result.prompt.render(lm.decode),
            "found_words": {k: list(v) for k, v in result.prompt.verbalizer.words.items()},
            "dev": result.dev_metrics, "test": _test(out, scope, evaluator, result.prompt, task),
            "manual_dev": evaluator.evaluate(manual, task.split("dev"), task),
            "manual_test": _test(out, scope, evaluator, manual, task),
            "candidates": int(rungs[0].scores["candidates"]) if rungs else 0,
            "search_forward_passes": result.history[-1].forward_passes if result.history else 0,
            "search_seconds": result.history[-1].seconds if result.history else 0.0,
            "test_n": len(task.split("test")), "search": SEARCH,
            "seconds": round(time.perf_counter() - started, 1), "environment": environment()}
    atomic.write_json(path, data)
    print(f"{run}: {data['found']!r} test {data['test']['accuracy']:.3f} vs manual "
          f"{data['manual_test']['accuracy']:.3f} ({data['seconds']} s)", flush=True)
    return data


def _test(out: Path, scope: str, evaluator: Evaluator, prompt: Prompt, task: Task) -> dict[str, float]:
    """Test metrics of ``prompt``, from ``out/test-cache.json`` when this scope already scored it."""
    path = out / CACHE
    cache = json.loads(path.read_text()) if path.exists() else {}
    key = f"{scope}|{prompt.template.source}|{json.dumps(prompt.verbalizer.to_json(), sort_keys=True)}"
    if key not in cache:
        cache[key] = evaluator.evaluate(prompt, task.split("test"), task)
        atomic.write_json(path, cache)
    return cache[key]


def summarise(out: Path) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.name != CACHE] if out.exists() else []
    lines = ["# Template filtering vs manual templates (SmolLM2-135M-Instruct, fp32, LM-BFF 16-shot)", "",
             "Regenerate: `python -m benchmarks.exp_templates --part all` (runs what is missing; re-tabulates).",
             f"Search: `{json.dumps(SEARCH)}`; test = each task's LM-BFF test.tsv (`test n` below).", "",
             "| task | variant | seeds | filter test acc | manual test acc | filter dev acc | test n | s/run |",
             "|---|---|---|---|---|---|---|---|"]
    main = [r for r in runs if r["halving"]]
    for key in sorted({(r["task"], r["variant"]) for r in main}):
        group = [r for r in main if (r["task"], r["variant"]) == key]
        found = np.array([r["test"]["accuracy"] for r in group])
        manual = np.array([r["manual_test"]["accuracy"] for r in group])
        dev = np.array([r["dev"]["accuracy"] for r in group])
        lines.append(f"| {key[0]} | {key[1]} | {len(group)} | {found.mean():.3f} ± {found.std():.3f} | "
                     f"{manual.mean():.3f} ± {manual.std():.3f} | {dev.mean():.3f} | {group[0]['test_n']} | "
                     f"{np.mean([r['seconds'] for r in group]):.0f} |")
    pairs = [(r, next((a for a in runs if a["run"] == r["run"] + "-nohalving"), None)) for r in main]
    pairs = [(r, a) for r, a in pairs if a is not None]
    if pairs:
        lines += ["", "## Ablation: successive halving vs every candidate on all training examples", "",
                  "| run | candidates | winner (halving) | winner (full) | same | forward passes (halving / full) | "
                  "test acc (halving / full) |", "|---|---|---|---|---|---|---|"]
        for r, a in pairs:
            same = (r["found"], r["found_words"]) == (a["found"], a["found_words"])
            lines.append(f"| {r['run']} | {r['candidates']} | `{r['found']!r}` {_words(r)} | `{a['found']!r}` "
                         f"{_words(a)} | {'yes' if same else 'no'} | "
                         f"{r['search_forward_passes']} / {a['search_forward_passes']} | "
                         f"{r['test']['accuracy']:.3f} / {a['test']['accuracy']:.3f} |")
    lines += ["", "Per run (winner, label words):", ""]
    lines += [f"- {r['run']}: `{r['found']!r}` {_words(r)}" for r in main]
    atomic.write_text(out / "README.md", "\n".join(lines) + "\n")


def _words(run: dict) -> str:
    return "/".join(words[0] for words in run["found_words"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", choices=["main", "ablation", "all", "table"])
    parser.add_argument("--tasks", default=",".join(MANUAL), help="comma-separated: " + ", ".join(MANUAL))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--test-limit", type=int, help="score a fixed random subset of this many test examples")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results folder (default {OUT})")
    args = parser.parse_args()
    tasks, variants = args.tasks.split(","), args.variants.split(",")
    if unknown := sorted(set(tasks) - set(MANUAL)) + sorted(set(variants) - set(VARIANTS)):
        parser.error(f"unknown task(s)/variant(s) {unknown}: use tasks {list(MANUAL)}, variants {list(VARIANTS)}")
    if args.part != "table":
        root, lm = data_dir(args.data_dir), load_model("smollm2-135m", device="cpu")
        for name in tasks:
            for seed in map(int, args.seeds.split(",")):
                if args.part in ("main", "all"):
                    for variant in variants:
                        run_one(lm, root, args.out, name, seed, variant, halving=True, test_limit=args.test_limit)
                if args.part in ("ablation", "all"):
                    run_one(lm, root, args.out, name, seed, "base", halving=True, test_limit=args.test_limit)
                    run_one(lm, root, args.out, name, seed, "base", halving=False, test_limit=args.test_limit)
    summarise(args.out)


if __name__ == "__main__":
    main()
