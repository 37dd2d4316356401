"""One AutoPrompt iteration, ours vs the reference semantics, on the same model and batches.

Both compute the same trigger gradient (one forward + backward per accumulation batch) and the
same HotFlip candidates; they differ in re-scoring: the reference runs one forward pass per
candidate with full-vocabulary logits at every position in fp32, ours sends incumbent + all
candidates through the Evaluator in one batched call with shared-prefix reuse. Both must pick the
same candidate.

    python -m benchmarks.perf_autoprompt [--quick] [--data-dir DIR]

writes ``results/perf/autoprompt.json``; the last line is ``speedup vs reference: <N>x``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from autoprompt_search import Evaluator, Prompt, load_model
from autoprompt_search.data.loaders import load_lmbff
from autoprompt_search.models.vocabulary import clean_token_mask
from autoprompt_search.scoring.differentiable import trigger_gradient

from .common import data_dir, environment, write_result
from .perf_evaluator import reference_scores

TEMPLATE = "Review: {sentence} [T*3]\nSentiment:[P]"
VERBALIZER = {"0": "negative", "1": "positive"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir")
    parser.add_argument("--num-cand", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    num_cand = 8 if args.quick else args.num_cand
    lm = load_model("smollm2-135m", device="cpu")
    task = load_lmbff(data_dir(args.data_dir), "SST-2", seed=42)
    rng = np.random.default_rng(0)
    train = list(task.split("train")) + list(task.split("dev"))
    grad_batch = [train[i] for i in rng.choice(len(train), args.batch_size, replace=False)]
    eval_batch = [train[i] for i in rng.choice(len(train), args.batch_size, replace=False)]
    evaluator = Evaluator(lm)
    the = lm.tokenize(" the")[0]
    prompt = evaluator.encoder.validate(Prompt.build(TEMPLATE, VERBALIZER).with_triggers((the,) * 3), task)
    text_before = evaluator.encoder.encode(prompt, grad_batch[0]).text_before
    gold = [[evaluator.encoder.word_ids(VERBALIZER[e.label], text_before)[0]] for e in grad_batch]
    allowed = torch.from_numpy(clean_token_mask(lm))
    slot = 2

    def proposals() -> list[Prompt]:
        grad, _ = trigger_gradient(evaluator.encoder, prompt, grad_batch, gold)
        estimate = -(lm.model.get_input_embeddings().weight.detach() @ grad[slot])
        estimate[~allowed] = float("-inf")
        tokens = torch.topk(estimate, num_cand).indices.tolist()
        return [prompt] + [prompt.with_triggers((the, the, t)) for t in tokens]

    def ours() -> int:
        table = evaluator.score(proposals(), eval_batch, task)
        return int(np.argmax([table.metrics(i)["gold_logprob"] for i in range(num_cand + 1)]))

    def reference() -> int:
        scores = reference_scores(evaluator, proposals(), eval_batch, task)  # (C, E, L)
        gold_idx = np.array([task.labels.index(e.label) for e in eval_batch])
        return int(np.argmax(scores[:, np.arange(len(eval_batch)), gold_idx].mean(axis=1)))

    ours()  # warm-up (tokenizer caches, clean-token mask)
    timings = {}
    picks = {}
    for name, fn in (("reference", reference), ("ours", ours), ("reference_again", reference), ("ours_again", ours)):
        started = time.perf_counter()
        picks[name] = fn()
        timings[name] = time.perf_counter() - started
    assert picks["ours"] == picks["reference"], f"different picks: ours {picks['ours']} vs {picks['reference']}"
    ref_s = min(timings["reference"], timings["reference_again"])
    ours_s = min(timings["ours"], timings["ours_again"])
    result = {"environment": environment(), "template": TEMPLATE, "num_cand": num_cand, "batch_size": args.batch_size,
              "seconds_per_iteration": {"reference": ref_s, "ours": ours_s}, "picked_candidate": picks["ours"],
              "speedup": ref_s / ours_s, "quick": args.quick}
    path = write_result("autoprompt" + ("-quick" if args.quick else ""), result)
    print(f"one iteration: reference {ref_s:.2f}s, ours {ours_s:.2f}s; both pick candidate {picks['ours']}")
    print(f"wrote {path}")
    print(f"speedup vs reference: {ref_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
