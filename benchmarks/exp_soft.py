"""Soft prompts vs the manual template on SST-2 (16-shot, full data) and LAMA T-REx, with SmolLM2.

Every soft method registered (prompt-tuning, p-tuning, and the deep ones — prefix-tuning,
p-tuning-v2 — when present) trains with its ``cpu`` preset. Each run writes
``results/soft/<run>.json`` (skipped when present) and keeps its run directory under
``results/soft/runs/`` with ``--resume``, so a killed experiment continues where it stopped;
``results/soft/README.md`` tabulates the runs. Selection uses dev (never test): SST-2 test = the
872 GLUE dev sentences; LAMA test = mLAMA train ∪ dev of the relation.

    python -m benchmarks.exp_soft [--part sst2-16shot|sst2-full|lama|all|table] [--steps N]
        [--seeds 13 21 ...] [--methods prompt-tuning ...] [--relations P19 ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from autoprompt_search import SEARCHERS, Budget, Evaluator, Prompt, atomic, load_model
from autoprompt_search.data.loaders import lama_manual_template, load_lama, load_lmbff, load_task
from autoprompt_search.data.tasks import k_shot
from autoprompt_search.searchers import SoftSearcher

from .common import RESULTS, data_dir, environment, found_vs_manual, headline

OUT = RESULTS / "soft"
SST2_MANUAL = "Review: {sentence}\nSentiment:[P]"
#: The manual template behind 8 vectors (PEFT-exportable), which start as an instruction's tokens.
SST2_SOFT = "[V*8]Review: {sentence}\nSentiment:[P]"
SST2_INIT = "text:Is this movie review positive or negative?"
SST2_WORDS = {"0": "negative", "1": "positive"}
SEEDS = (13, 21, 42, 87, 100)
RELATIONS = ("P19", "P30", "P36", "P176", "P1376")
METHODS = ("prompt-tuning", "p-tuning", "prefix-tuning", "p-tuning-v2")
#: LAMA dev facts a run selects on (a fixed prefix of dev, to keep each evaluation short).
LAMA_SELECT = 200


def soft_methods() -> list[str]:
    """The soft methods registered in this checkout, in a fixed order."""
    return [m for m in METHODS if m in SEARCHERS and issubclass(SEARCHERS[m], SoftSearcher)]


def run_one(name: str, task, method: str, config: dict, manual: str, verbalizer, *, steps: int | None, seed: int,
            lm, out: Path, test_key: str) -> dict:
    path = out / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    started = time.perf_counter()
    evaluator = Evaluator(lm)
    searcher = SEARCHERS[method](**config, verbalizers=[verbalizer], preset="cpu", steps=steps, seed=seed)
    result = searcher.search(task, lm, budget=Budget(), evaluator=evaluator, run_dir=out / "runs" / name,
                             resume=True, progress=True)
    seconds = round(time.perf_counter() - started, 1)
    manual_prompt = Prompt.build(manual, verbalizer)
    data = {"run": name, "method": method, "seed": seed, "config": searcher.config(), "manual": manual,
            "steps": len(result.history), "dev": result.dev_metrics, "test": result.test_metrics,
            "manual_dev": evaluator.evaluate(manual_prompt, task.split("dev"), task),
            "manual_test": _manual_test(out, test_key, evaluator, manual_prompt, task),
            "seconds": seconds, "environment": environment()}
    atomic.write_json(path, data)
    print(f"{name}: test {headline(data['test']):.3f} vs manual {headline(data['manual_test']):.3f} ({seconds}s)",
          flush=True)
    return data


def _manual_test(out: Path, key: str, evaluator: Evaluator, prompt: Prompt, task) -> dict:
    """The manual template's test metrics, computed once per test set (every SST-2 seed shares GLUE dev)."""
    path = out / "manual" / f"{key}.json"
    if not path.exists():
        atomic.write_json(path, evaluator.evaluate(prompt, task.split("test"), task))
    return json.loads(path.read_text())


def _template(method: str, soft: str, manual: str) -> list[str]:
    """Shallow methods train ``[V]`` slots; deep ones (no ``[V]`` needed) start from the manual template."""
    return [soft if method in ("prompt-tuning", "p-tuning") else manual]


def sst2_16shot(lm, root: Path, steps: int | None, out: Path, seeds=SEEDS, template=SST2_SOFT,
                init=SST2_INIT, methods: list[str] | None = None) -> None:
    test = load_task(root / "SST-2" / "glue" / "dev.tsv").split("test")
    for seed in seeds:
        task = load_lmbff(root, "SST-2", seed=seed).with_splits(test=test)
        for method in methods or soft_methods():
            config = {"templates": _template(method, template, SST2_MANUAL), "init": init}
            run_one(f"sst2-16shot-{method}-{seed}", task, method, config, SST2_MANUAL, SST2_WORDS, steps=steps,
                    seed=seed, lm=lm, out=out, test_key="sst2")


def sst2_full(lm, root: Path, steps: int | None, out: Path, template=SST2_SOFT, init=SST2_INIT) -> None:
    """Train on GLUE train; select on 200 held-apart train sentences; test on GLUE dev."""
    glue = load_task(root / "SST-2" / "glue")
    rows = list(glue.split("train"))
    order = np.random.default_rng(0).permutation(len(rows))
    dev = k_shot([rows[i] for i in order[:2000]], 100, seed=0)
    held = {id(x) for x in dev}
    train = [rows[i] for i in order[2000:] if id(rows[i]) not in held]
    task = glue.with_splits(train=train, dev=dev, test=glue.split("dev"))
    method = soft_methods()[0]
    config = {"templates": _template(method, template, SST2_MANUAL), "init": init}
    run_one(f"sst2-full-{method}", task, method, config, SST2_MANUAL, SST2_WORDS, steps=steps or 300, seed=0, lm=lm,
            out=out, test_key="sst2")


def lama(lm, root: Path, steps: int | None, out: Path, relations=RELATIONS) -> None:
    """P-tuning initialised from the manual template: the phrase before [P] becomes the vectors' init."""
    for relation in relations:
        manual = lama_manual_template(root, relation).replace(" [P]", "[P]")
        head, phrase = re.fullmatch(r"(.*\{sub_label\})(.*)\[P\]", manual).groups()
        template = f"{head}[V*{max(1, len(lm.tokenize(phrase)))}][P]"
        task = load_lama(root, relation)
        task = task.with_splits(dev=task.split("dev")[:LAMA_SELECT])
        config = {"templates": [template], "init": f"text:{phrase}" if phrase.strip() else "vocab"}
        run_one(f"lama-p-tuning-{relation}", task, "p-tuning", config, manual, None, steps=steps, seed=0, lm=lm,
                out=out, test_key=f"lama-{relation}")


def summarise(out: Path) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))] if out.exists() else []
    lines = ["# Soft prompts vs manual templates (SmolLM2-135M-Instruct, fp32, `cpu` presets)", "",
             "Regenerate: `python -m benchmarks.exp_soft --part all` (runs what is missing; re-tabulates).", "",
             "| run | method | steps | test | test (manual) | dev | dev (manual) | s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: r["run"]):
        lines.append(f"| {r['run']} | {r['method']} | {r['steps']} | {headline(r['test']):.3f} | "
                     f"{headline(r['manual_test']):.3f} | {headline(r['dev']):.3f} | {headline(r['manual_dev']):.3f} "
                     f"| {r['seconds']} |")
    for method in METHODS:
        shots = [r for r in runs if r["run"].startswith("sst2-16shot-") and r["method"] == method]
        if shots:
            lines += ["", f"SST-2 16-shot, {method}, {len(shots)} seeds: {found_vs_manual(shots)}."]
    atomic.write_text(out / "README.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", choices=["sst2-16shot", "sst2-full", "lama", "all", "table"])
    parser.add_argument("--steps", type=int, help="training steps per run (default: the cpu preset's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="SST-2 16-shot data seeds")
    parser.add_argument("--relations", nargs="+", default=list(RELATIONS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="SST-2 16-shot: these soft methods only")
    parser.add_argument("--template", default=SST2_SOFT, help="SST-2 soft template (shallow methods)")
    parser.add_argument("--init", default=SST2_INIT, help="SST-2 soft-vector init (see searchers/soft_init.py)")
    parser.add_argument("--out", type=Path, default=OUT, help="results folder (default results/soft)")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    root = data_dir(args.data_dir)
    if args.part != "table":
        lm = load_model("smollm2-135m", device="cpu")
        if args.part in ("sst2-16shot", "all"):
            sst2_16shot(lm, root, args.steps, args.out, args.seeds, args.template, args.init, args.methods)
        if args.part in ("lama", "all"):
            lama(lm, root, args.steps, args.out, relations=args.relations)
        if args.part in ("sst2-full", "all"):
            sst2_full(lm, root, args.steps, args.out, args.template, args.init)
    summarise(args.out)


if __name__ == "__main__":
    main()
