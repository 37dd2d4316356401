"""Mixed-task inference: three tasks, each with its own prompt, in one Evaluator run vs three runs.

Tasks (smollm2-135m): an SST-2 GLUE dev slice (LM-BFF's manual prompt, or a saved soft/deep prompt
with ``--sst2-prompt``), TREC (LM-BFF k-shot test file) with its manual prompt, and a LAMA relation
(LAMA test facts, LAMA's manual template). The mixed run scores all three with
:meth:`Evaluator.score_many` (one plan, rows of all tasks sorted and packed together); the separate
runs call :meth:`Evaluator.score` once per task. Predictions must be identical (asserted; scores are
compared with a tolerance, since different padding changes float rounding).

    python -m benchmarks.perf_mixed [--quick] [--data-dir DIR] [--n 300] [--relation P36] [--sst2-prompt DIR]

writes ``results/perf/mixed.json``; the last line is ``mixed vs separate throughput: <N>x``.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from autoprompt_search import Evaluator, Prompt, load_model
from autoprompt_search.data.loaders import lama_manual_template, load_lama, load_lmbff, load_task
from autoprompt_search.scoring.evaluator import Job
from autoprompt_search.scoring.score_table import ScoreTable

from .common import data_dir, environment, timed, write_result

SST2 = ("{sentence} It was[P]", {"0": "terrible", "1": "great"})
TREC = ("Question: {sentence}\nAnswer type:[P]",
        {"0": "Description", "1": "Entity", "2": "Expression", "3": "Human", "4": "Location", "5": "Number"})
#: Largest score difference between the mixed and the separate runs still counted as equal.
TOLERANCE = 1e-3


def jobs(root, n: int, relation: str, sst2_prompt: str | None) -> list[Job]:
    sst2_task = load_lmbff(root, "SST-2", seed=13)
    sst2 = list(load_task(root / "SST-2" / "glue" / "dev.tsv").split("test"))[:n]
    trec_task = load_lmbff(root, "trec", seed=13)
    lama = load_lama(root, relation)
    return [
        Job(Prompt.load(sst2_prompt) if sst2_prompt else Prompt.build(*SST2), sst2, sst2_task),
        Job(Prompt.build(*TREC), trec_task.split("test")[:n], trec_task),
        Job(Prompt.build(lama_manual_template(root, relation)), lama.split("test")[:n], lama),
    ]


def predictions(table: ScoreTable) -> np.ndarray:
    """Predicted class per example, or for facts whether the gold object ranks first."""
    return table.scores[0].argmax(axis=1) if table.scores is not None else table.rank[0] == 1


def largest_difference(a: ScoreTable, b: ScoreTable) -> float:
    pairs = [(a.scores, b.scores), (a.gold_logprob, b.gold_logprob)]
    return max(float(np.abs(x - y).max()) for x, y in pairs if x is not None)


def run(n: int, relation: str, sst2_prompt: str | None, root, repeat: int, warmup: int) -> dict[str, Any]:
    lm = load_model("smollm2-135m")
    evaluator = Evaluator(lm)
    work = jobs(root, n, relation, sst2_prompt)
    examples = sum(len(job.examples) for job in work)
    separate_s, separate = timed(lambda: [evaluator.score([j.prompts], j.examples, j.task) for j in work],
                                 repeat=repeat, warmup=warmup)
    mixed_s, mixed = timed(lambda: evaluator.score_many(work), repeat=repeat, warmup=warmup)
    tasks = []
    for job, alone, together in zip(work, separate, mixed, strict=True):
        same = bool(np.array_equal(predictions(alone), predictions(together)))
        difference = largest_difference(alone, together)
        assert same and difference < TOLERANCE, f"{job.task.name}: mixed run differs from the separate run"
        tasks.append({"task": job.task.name, "examples": len(job.examples), "template": job.prompts.template.source,
                      "metrics": together.metrics(0), "same_predictions": same, "max_score_difference": difference})
    return {
        "benchmark": "mixed-task inference: one Evaluator run over three tasks vs one run per task",
        "model": lm.name, "environment": environment(), "repeat": repeat, "tasks": tasks, "examples": examples,
        "separate": {"seconds": separate_s, "examples_per_second": examples / separate_s},
        "mixed": {"seconds": mixed_s, "examples_per_second": examples / mixed_s},
        "speedup": separate_s / mixed_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (16 examples per task, one repeat)")
    parser.add_argument("--data-dir")
    parser.add_argument("--n", type=int, default=300, help="examples per task (default 300)")
    parser.add_argument("--relation", default="P36", help="LAMA T-REx relation (default P36, capital of)")
    parser.add_argument("--sst2-prompt", help="a saved prompt (e.g. a soft or deep prompt's run directory) for SST-2")
    args = parser.parse_args()
    n, repeat, warmup = (16, 1, 0) if args.quick else (args.n, 3, 1)
    result = run(n, args.relation, args.sst2_prompt, data_dir(args.data_dir), repeat, warmup)
    for task in result["tasks"]:
        print(f"{task['task']}: {task['examples']} examples, same predictions, max score difference "
              f"{task['max_score_difference']:.1e}")
    print(f"separate: {result['separate']['examples_per_second']:.1f} examples/s; "
          f"mixed: {result['mixed']['examples_per_second']:.1f} examples/s")
    print(f"wrote {write_result('mixed', result)}")
    print(f"mixed vs separate throughput: {result['speedup']:.2f}x")


if __name__ == "__main__":
    main()
