"""Test-set scoring: one prompt on many examples, its text before the input run once vs per example.

Scoring a found prompt on a test set is most of a leaderboard job's time (2,000 MR/CR test examples
cost 130-270 s per prompt on one CPU core), and an instruction-style prompt spends most of its
tokens on the instruction, which is the same for every example. The Evaluator's prefix reuse runs
that shared prefix once per prompt (soft vectors at the start included) and only each example's
own tokens per row. Measured on SST-2 GLUE dev sentences with the leaderboard's instruction
template and an 8-vector soft prompt of the same shape, plain vs reuse, in one run; the predictions
must be identical (asserted) and the scores equal within float rounding.

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
from autoprompt_search.data.loaders import load_lmbff, load_task

from .common import data_dir, environment, timed, write_result

INSTRUCTION = ("Is the sentiment of this movie review positive or negative?\nReview: {sentence}\nSentiment:[P]",
               {"0": "negative", "1": "positive"})
SOFT = "[V*8]Review: {sentence}\nSentiment:[P]"
#: Largest score difference between the two paths still counted as equal (float rounding).
TOLERANCE = 1e-3


def prompts(lm) -> dict[str, Prompt]:
    """The leaderboard's two test-set shapes: an instruction, and soft vectors before a short cue."""
    generator = torch.Generator().manual_seed(0)
    scale = lm.model.get_input_embeddings().weight.std()
    soft = torch.randn(8, lm.hidden_size, generator=generator) * scale
    return {"instruction": Prompt.build(*INSTRUCTION), "soft": Prompt.build(SOFT, INSTRUCTION[1], soft=soft)}


def run(n: int, root, repeat: int) -> dict[str, Any]:
    lm = load_model("smollm2-135m")
    task = load_lmbff(root, "SST-2", seed=13)
    examples = list(load_task(root / "SST-2" / "glue" / "dev.tsv").split("test"))[:n]
    shapes = []
    for name, prompt in prompts(lm).items():
        timings: dict[bool, float] = {}
        tables, tokens = {}, {}
        for reuse in (False, True):
            evaluator = Evaluator(lm, reuse_prefix=reuse)
            timings[reuse], tables[reuse] = timed(lambda e=evaluator, p=prompt: e.score([p], examples, task),
                                                  repeat=repeat)
            tokens[reuse] = evaluator.forward_tokens // repeat
        same = bool(np.array_equal(tables[False].scores.argmax(-1), tables[True].scores.argmax(-1)))
        difference = float(np.abs(tables[False].scores - tables[True].scores).max())
        assert same and difference < TOLERANCE, f"{name}: prefix reuse changed the scores by {difference:.1e}"
        shapes.append({"prompt": name, "template": prompt.template.source, "examples": n,
                       "plain_seconds": timings[False], "reuse_seconds": timings[True],
                       "speedup": timings[False] / timings[True], "tokens_per_row": tokens[False] / n,
                       "same_predictions": same, "max_score_difference": difference,
                       "accuracy": tables[True].metrics(0)["accuracy"]})
    return {"benchmark": "test-set scoring of one prompt, shared prefix run once vs per example",
            "model": lm.name, "environment": environment(), "repeat": repeat, "shapes": shapes,
            "speedup": next(s["speedup"] for s in shapes if s["prompt"] == "instruction")}


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
