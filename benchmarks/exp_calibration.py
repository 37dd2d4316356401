"""Contextual calibration and in-context demonstrations on LM-BFF's 16-shot SST-2, MR and CR, SmolLM2.

Fixed manual templates, nothing selected: each cell (task, template, setting, seed) scores the test
split and writes ``results/calibration/<cell>.json`` (skipped when present, so a killed run
resumes); ``README.md`` tabulates test accuracy, mean ± std over seeds. Demonstrations come from
the seed's 16-shot train split (one per class, LM-BFF); settings without demonstrations do not
depend on the seed and run once.

    python -m benchmarks.exp_calibration [--tasks SST-2 mr cr] [--seeds 13 21 42 87 100] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autoprompt_search import Evaluator, Prompt, atomic, load_model
from autoprompt_search.data.loaders import load_lmbff
from autoprompt_search.data.tasks import k_shot
from autoprompt_search.prompts.demonstrations import Demonstrations

from .common import RESULTS, data_dir, environment

OUT = RESULTS / "calibration"
TEMPLATES = {
    "it-was": ("{sentence} It was[P]", {"0": "terrible", "1": "great"}),  # LM-BFF's SST-2 template
    "review": ("Review: {sentence}\nSentiment:[P]", {"0": "negative", "1": "positive"}),
}
#: setting → (calibrate, demonstration selection or None)
SETTINGS = {
    "plain": (False, None), "calibrated": (True, None),
    "demos": (False, "random"), "demos+cal": (True, "random"),
    "similar": (False, "similar"), "similar+cal": (True, "similar"),
}
SEEDS = (13, 21, 42, 87, 100)


def run_cell(lm, task, name: str, template: str, setting: str, seed: int, out: Path, limit: int | None) -> dict:
    path = out / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    calibrate, selection = SETTINGS[setting]
    demos = Demonstrations(k=1, selection=selection, seed=seed) if selection else None
    evaluator = Evaluator(lm, calibration="contextual" if calibrate else None, demos=demos, progress=True)
    source, words = TEMPLATES[template]
    test = task.split("test")
    if limit is not None:  # a class-balanced sample: test files are often sorted by label
        test = k_shot(test, max(1, limit // len(task.labels)), seed=0)
    started = time.perf_counter()
    prompt = evaluator.resolved(Prompt.build(source, words), task)
    table = evaluator.score([prompt], test, task)
    predicted = np.bincount(table.scores[0].argmax(axis=1), minlength=len(task.labels))
    data = {"cell": name, "task": task.name, "template": template, "setting": setting, "seed": seed,
            "test": table.metrics(0), "predicted": dict(zip(task.labels, predicted.tolist(), strict=True)),
            "prompt": prompt.to_json(lm.decode), "seconds": round(time.perf_counter() - started, 1),
            "environment": environment()}
    atomic.write_json(path, data)
    print(f"{name}: accuracy {data['test']['accuracy']:.3f}, predicted {data['predicted']}", flush=True)
    return data


def run(lm, root: Path, *, tasks: Sequence[str], seeds: Sequence[int], out: Path = OUT,
        limit: int | None = None) -> None:
    """Score every missing cell, then re-tabulate."""
    for task_name in tasks:
        for seed in seeds:
            task = load_lmbff(root, task_name, seed=seed)
            for template in TEMPLATES:
                for setting, (_, selection) in SETTINGS.items():
                    if selection is None and seed != seeds[0]:
                        continue  # seed-independent: run once
                    cell = f"{task_name.lower()}-{template}-{setting}" + (f"-{seed}" if selection else "")
                    run_cell(lm, task, cell, template, setting, seed, out, limit)
    summarise(out)


def summarise(out: Path = OUT) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))] if out.exists() else []
    lines = ["# Contextual calibration and demonstrations (SmolLM2-135M-Instruct, fp32, 16-shot LM-BFF splits)", "",
             "Regenerate: `python -m benchmarks.exp_calibration` (runs missing cells; re-tabulates).",
             "Test accuracy, mean ± std over demonstration seeds (n = seeds; settings without demonstrations "
             "are seed-independent); `pred` = share of test sentences predicted as the first label.", "",
             "| task | template | " + " | ".join(SETTINGS) + " |", "|---|---|" + "---|" * len(SETTINGS)]
    keys = sorted({(r["task"], r["template"]) for r in runs})
    for task, template in keys:
        cells = []
        for setting in SETTINGS:
            rows = [r for r in runs if (r["task"], r["template"], r["setting"]) == (task, template, setting)]
            if not rows:
                cells.append("–")
                continue
            acc = np.array([r["test"]["accuracy"] for r in rows])
            first = np.mean([next(iter(r["predicted"].values())) / r["test"]["n"] for r in rows])
            cells.append(f"{acc.mean():.3f} ± {acc.std():.3f} (n={len(rows)}, pred {first:.2f})")
        lines.append(f"| {task} | {template} | " + " | ".join(cells) + " |")
    atomic.write_text(out / "README.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["SST-2", "mr", "cr"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--limit", type=int, help="score a class-balanced sample of N test sentences (a quick check)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    lm = load_model(args.model, device="cpu")
    run(lm, data_dir(args.data_dir), tasks=args.tasks, seeds=args.seeds, out=args.out, limit=args.limit)


if __name__ == "__main__":
    main()
