"""Batched generation with the KV cache vs one example at a time, on the real model, in one run.

Greedy decoding of E2E test MRs (the first ``--examples`` of ``testset_w_refs.csv``) under an
instruction template, through the Evaluator's ``generate`` (the model's own ``generate``, KV cache,
left padding): once in batches of ``--batch-size`` inputs, once with batch size 1. Throughput is
generated tokens (the kept text, re-tokenized) per second; both runs decode the same texts, which
the result records. The order alternates per repeat so load on the machine hits both alike.

    python -m benchmarks.perf_generate [--quick] [--examples N] [--batch-size B] [--data-dir DIR]

writes ``results/perf/generate.json``; the last line is ``generation speedup batched vs single: <R>x``.
"""

from __future__ import annotations

import argparse
import time

from autoprompt_search import Evaluator, Prompt, load_model
from autoprompt_search.data.loaders import load_task
from autoprompt_search.scoring.generation import Decoding

from .common import data_dir, environment, write_result

TEMPLATE = "Write one sentence describing the restaurant from its attributes.\nAttributes: {mr}\nDescription:[P]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 examples, 24 new tokens at most")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    examples, new_tokens = (8, 24) if args.quick else (args.examples, args.max_new_tokens)
    lm = load_model("smollm2-135m", device="cpu")
    task = load_task(data_dir(args.data_dir) / "E2E" / "testset_w_refs.csv")
    rows = list(task.split("test"))[:examples]
    prompt = Prompt.build(TEMPLATE)
    runs = {"batched": Decoding(max_new_tokens=new_tokens, batch_size=args.batch_size),
            "single": Decoding(max_new_tokens=new_tokens, batch_size=1)}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    texts: dict[str, list[str]] = {}
    Evaluator(lm, decoding=runs["single"]).generate(prompt, rows[:1], task)  # warm-up (stop-token table, kernels)
    for repeat in range(args.repeats):
        for name in (list(runs) if repeat % 2 == 0 else list(runs)[::-1]):
            evaluator = Evaluator(lm, decoding=runs[name])
            started = time.perf_counter()
            texts[name] = evaluator.generate(prompt, rows, task)
            seconds[name].append(time.perf_counter() - started)
    tokens = {name: sum(len(lm.tokenize(t)) for t in out) for name, out in texts.items()}
    rate = {name: tokens[name] / min(seconds[name]) for name in runs}
    speedup = rate["batched"] / rate["single"]
    same = sum(a == b for a, b in zip(texts["batched"], texts["single"], strict=True))
    result = {"environment": environment(), "template": TEMPLATE, "examples": len(rows), "batch_size": args.batch_size,
              "max_new_tokens": new_tokens, "seconds": seconds, "generated_tokens": tokens, "tokens_per_second": rate,
              "identical_texts": same, "speedup": speedup, "quick": args.quick, "sample": texts["batched"][:3]}
    path = write_result("generate" + ("-quick" if args.quick else ""), result)
    print(f"{len(rows)} inputs, up to {new_tokens} new tokens: batched ({args.batch_size}) {rate['batched']:.1f} tok/s "
          f"in {min(seconds['batched']):.1f}s, single {rate['single']:.1f} tok/s in {min(seconds['single']):.1f}s; "
          f"{same}/{len(rows)} texts identical")
    print(f"wrote {path}")
    print(f"generation speedup batched vs single: {speedup:.2f}x")


if __name__ == "__main__":
    main()
