"""AutoPrompt and manual templates on SST-2 (16-shot, full data), MR/CR (16-shot) and LAMA T-REx, with SmolLM2.

Each run writes ``results/autoprompt/<run>.json`` (skipped when present, so a killed run resumes)
and ``results/autoprompt/README.md`` tabulates them. Test sets are only scored, never selected on:
SST-2 test = the 872 GLUE dev sentences; MR/CR test = LM-BFF's test.csv (2,000 sentences);
LAMA test = mLAMA train ∪ dev of the relation.

    python -m benchmarks.exp_autoprompt [--part sst2-16shot|mr-16shot|cr-16shot|sst2-full|lama|all]
                                        [--iterations N] [--objective vocab|class] [--seeds S ...]

``--objective class`` (SST-2 parts only) names its runs ``<run>-class``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from functools import partial
from pathlib import Path

import numpy as np

from autoprompt_search import Budget, Evaluator, Prompt, atomic, load_model
from autoprompt_search.data.loaders import lama_manual_template, load_lama, load_lmbff, load_task
from autoprompt_search.data.tasks import k_shot
from autoprompt_search.searchers import AutoPromptSearcher

from .common import RESULTS, data_dir, environment, found_vs_manual, headline

OUT = RESULTS / "autoprompt"
SST2_TEMPLATE = "Review: {sentence} [T*3]\nSentiment:[P]"
SST2_MANUAL = "Review: {sentence}\nSentiment:[P]"
SST2_WORDS = {"0": "negative", "1": "positive"}
SEEDS = (13, 21, 42, 87, 100)
RELATIONS = ("P19", "P30", "P36", "P176", "P1376")


def run_one(name: str, task, template: str, verbalizer, manual: str, *, init: str, iterations: int, seed: int,
            lm, objective: str = "vocab") -> dict:
    name = name if objective == "vocab" else f"{name}-{objective}"
    path = OUT / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    started = time.perf_counter()
    evaluator = Evaluator(lm)
    searcher = AutoPromptSearcher(templates=[template], verbalizers=[verbalizer], preset="cpu", init=init,
                                  iterations=iterations, objective=objective, seed=seed)
    result = searcher.search(task, lm, budget=Budget(iterations=iterations), evaluator=evaluator,
                             run_dir=OUT / "runs" / name, resume=True, progress=False)
    manual_test = evaluator.evaluate(Prompt.build(manual, verbalizer), task.split("test"), task)
    manual_dev = evaluator.evaluate(Prompt.build(manual, verbalizer), task.split("dev"), task)
    data = {"run": name, "seed": seed, "iterations": iterations, "objective": objective, "template": template,
            "manual": manual,
            "found": result.prompt.render(lm.decode), "trigger_ids": list(result.prompt.trigger_ids),
            "dev": result.dev_metrics, "test": result.test_metrics, "manual_dev": manual_dev,
            "manual_test": manual_test, "accepted": int(sum(r.scores.get("accepted", 0) for r in result.history)),
            "seconds": round(time.perf_counter() - started, 1), "environment": environment()}
    atomic.write_json(path, data)
    print(f"{name}: found {data['found']!r} test {headline(data['test']):.3f} vs manual {headline(manual_test):.3f}",
          flush=True)
    return data


def sentiment_16shot(name: str, lm, root: Path, iterations: int, objective: str, seeds: list[int]) -> None:
    """LM-BFF's 16-shot splits of SST-2, MR or CR, with the SST-2 template and label words."""
    glue_dev = load_task(root / "SST-2" / "glue" / "dev.tsv").split("test") if name == "SST-2" else None
    for seed in seeds:
        task = load_lmbff(root, name, seed=seed)
        task = task.with_splits(test=glue_dev) if glue_dev is not None else task
        run_one(f"{name.lower().replace('-', '')}-16shot-{seed}", task, SST2_TEMPLATE, SST2_WORDS, SST2_MANUAL,
                init=" the", iterations=iterations, seed=seed, lm=lm, objective=objective)


def sst2_full(lm, root: Path, iterations: int, objective: str, seeds: list[int]) -> None:
    """Train on GLUE train; select on 200 held-apart train sentences; test on GLUE dev."""
    glue = load_task(root / "SST-2" / "glue")
    rows = list(glue.split("train"))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    dev = k_shot([rows[i] for i in order[:2000]], 100, seed=0)
    held = {id(x) for x in dev}
    train = [rows[i] for i in order[2000:] if id(rows[i]) not in held]
    task = glue.with_splits(train=train, dev=dev, test=glue.split("dev"))
    run_one("sst2-full", task, SST2_TEMPLATE, SST2_WORDS, SST2_MANUAL, init=" the", iterations=iterations,
            seed=0, lm=lm, objective=objective)


def lama(lm, root: Path, iterations: int, objective: str, seeds: list[int]) -> None:
    """AutoPrompt initialised from the manual template: the phrase before [P] becomes the triggers."""
    if objective != "vocab":
        raise SystemExit("LAMA ranks the whole vocabulary: run --part lama with --objective vocab")
    for relation in RELATIONS:
        manual = lama_manual_template(root, relation).replace(" [P]", "[P]")
        head, phrase = re.fullmatch(r"(.*\{sub_label\})(.*)\[P\]", manual).groups()
        template = f"{head}[T*{len(lm.tokenize(phrase))}][P]"
        task = load_lama(root, relation)
        run_one(f"lama-{relation}", task, template, None, manual, init=phrase, iterations=iterations, seed=0, lm=lm)


def summarise() -> None:
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))] if OUT.exists() else []
    lines = ["# AutoPrompt vs manual templates (SmolLM2-135M-Instruct, fp32)", "",
             "Regenerate: `python -m benchmarks.exp_autoprompt --part all` (runs missing; re-tabulates).", "",
             "Objective `vocab` is the reference's (gold class log-prob in the vocabulary); `class` renormalises",
             "it over the classes (`--objective class`).", "",
             "| run | objective | found prompt | test (found) | test (manual) | dev (found) | dev (manual) "
             "| accepted swaps | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: r["run"]):
        lines.append(f"| {r['run']} | {r.get('objective', 'vocab')} | `{r['found']!r}` | {headline(r['test']):.3f} "
                     f"| {headline(r['manual_test']):.3f} | {headline(r['dev']):.3f} | {headline(r['manual_dev']):.3f} "
                     f"| {r['accepted']} | {r['seconds']} |")
    for task in ("sst2", "mr", "cr"):
        for objective in ("vocab", "class"):
            shots = [r for r in runs
                     if r["run"].startswith(f"{task}-16shot") and r.get("objective", "vocab") == objective]
            if shots:
                lines += ["", f"{task} 16-shot, objective {objective}, seeds {sorted(r['seed'] for r in shots)}: "
                          f"AutoPrompt {found_vs_manual(shots)}."]
    atomic.write_text(OUT / "README.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = {"sst2-16shot": partial(sentiment_16shot, "SST-2"), "mr-16shot": partial(sentiment_16shot, "mr"),
             "cr-16shot": partial(sentiment_16shot, "cr"), "lama": lama, "sst2-full": sst2_full}
    parser.add_argument("--part", default="all", choices=[*parts, "all", "table"])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--objective", default="vocab", choices=["vocab", "class"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="16-shot data seeds")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    root = data_dir(args.data_dir)
    if args.part != "table":
        lm = load_model("smollm2-135m", device="cpu")
        for name, fn in parts.items():
            if args.part in (name, "all"):
                fn(lm, root, args.iterations, args.objective, args.seeds)
    summarise()


if __name__ == "__main__":
    main()
