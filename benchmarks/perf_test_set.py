"""Test-set scoring: one prompt on many examples, its text before the input run once vs per example.

Scoring a found prompt on a test set is most of a leaderboard job's time (2,000 MR/CR test examples
cost 130-270 s per prompt on one CPU core), and an instruction-style prompt spends most of its
tokens on the instruction, which is the same for every example. The Evaluator's prefix reuse runs
that shared prefix once per prompt (soft vectors at the start included) and only each example's
own tokens per row. Rows behind one deep prompt share their text the same way: the references of
one E2E meaning representation (~8 each) share its prompt, which is what a prefix-tuning run's dev
evaluations score. Measured in one run, plain vs reuse: SST-2 GLUE dev sentences under the
leaderboard's instruction template and under an 8-vector soft prompt of the same shape, and the
E2E dev references behind a 10-slot deep prompt. Predictions must be identical (asserted) and
scores equal within float rounding.

    python -m benchmarks.perf_test_set [--quick] [--data-dir DIR] [--n 256]

writes ``results/perf/test-set.json``; the last line is ``test-set scoring speedup with a shared
instruction: <R>x``.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from autoprompt_search import Evaluator, Prompt, load_model
from autoprompt_search.data.e2e import load_e2e
from autoprompt_search.data.loaders import load_lmbff, load_task
from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.scoring.deep_prompt import kv_shape
from autoprompt_search.scoring.score_table import ScoreTable

from .common import data_dir, environment, timed, write_result

INSTRUCTION = ("Is the sentiment of this movie review positive or negative?\nReview: {sentence}\nSentiment:[P]",
               {"0": "negative", "1": "positive"})
SOFT = "[V*8]Review: {sentence}\nSentiment:[P]"
DEEP = "Attributes: {mr}\nDescription:[P]"
#: Largest score difference between the two paths still counted as equal (float rounding).
TOLERANCE = 1e-3


def shapes(lm, root, n: int) -> dict[str, tuple[Prompt, list[Example], Task]]:
    """The leaderboard's test-set shapes: an instruction, soft vectors before a short cue, and the
    references of E2E MRs behind a deep prompt (n sentences; n // 8 MRs)."""
    generator = torch.Generator().manual_seed(0)
    scale = lm.model.get_input_embeddings().weight.std()
    soft = torch.randn(8, lm.hidden_size, generator=generator) * scale
    shape = kv_shape(lm)
    deep = torch.randn(shape.layers, 2, shape.kv_heads, 10, shape.head_dim, generator=generator) * 0.5
    sst2 = load_lmbff(root, "SST-2", seed=13)
    sentences = list(load_task(root / "SST-2" / "glue" / "dev.tsv").split("test"))[:n]
    e2e = load_e2e(root, train=1, dev=max(1, n // 8), seed=13)
    return {"instruction": (Prompt.build(*INSTRUCTION), sentences, sst2),
            "soft": (Prompt.build(SOFT, INSTRUCTION[1], soft=soft), sentences, sst2),
            "deep-references": (Prompt.build(DEEP, deep=deep), list(e2e.split("dev")), e2e)}


def _scores(table: ScoreTable) -> np.ndarray:
    return table.scores if table.scores is not None else table.gold_logprob


def run(n: int, root, repeat: int) -> dict[str, Any]:
    lm = load_model("smollm2-135m")
    out = []
    for name, (prompt, examples, task) in shapes(lm, root, n).items():
        timings: dict[bool, float] = {}
        tables, tokens = {}, {}
        for reuse in (False, True):
            evaluator = Evaluator(lm, reuse_prefix=reuse)
            timings[reuse], tables[reuse] = timed(lambda e=evaluator, p=prompt, x=examples, t=task: e.score([p], x, t),
                                                  repeat=repeat)
            tokens[reuse] = evaluator.forward_tokens // repeat
        plain, reused = _scores(tables[False]), _scores(tables[True])
        same = task.kind != "classification" or bool(np.array_equal(plain.argmax(-1), reused.argmax(-1)))
        difference = float(np.abs(plain - reused).max())
        assert same and difference < TOLERANCE, f"{name}: prefix reuse changed the scores by {difference:.1e}"
        out.append({"prompt": name, "template": prompt.template.source, "examples": len(examples),
                    "plain_seconds": timings[False], "reuse_seconds": timings[True],
                    "speedup": timings[False] / timings[True], "tokens_per_example": tokens[False] / len(examples),
                    "same_predictions": same, "max_score_difference": difference})
    return {"benchmark": "test-set scoring of one prompt, shared prefix run once vs per example",
            "model": lm.name, "environment": environment(), "repeat": repeat, "shapes": out,
            "speedup": next(s["speedup"] for s in out if s["prompt"] == "instruction")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (32 examples, one repeat)")
    parser.add_argument("--data-dir")
    parser.add_argument("--n", type=int, default=256, help="test examples (default 256)")
    args = parser.parse_args()
    n, repeat = (32, 1) if args.quick else (args.n, 2)
    result = run(n, data_dir(args.data_dir), repeat)
    for shape in result["shapes"]:
        print(f"{shape['prompt']}: {shape['examples']} examples, plain {shape['plain_seconds']:.1f} s, "
              f"shared prefix {shape['reuse_seconds']:.1f} s ({shape['speedup']:.2f}x), same predictions, "
              f"max score difference {shape['max_score_difference']:.1e}")
    print(f"wrote {write_result('test-set', result)}")
    print(f"test-set scoring speedup with a shared instruction: {result['speedup']:.2f}x")


if __name__ == "__main__":
    main()
