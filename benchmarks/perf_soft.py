"""Prompt tuning, ours vs PEFT's, on the same model, data, batches, prompt length and steps.

Both train ``n`` vectors prepended to ``Review: {sentence}\\nSentiment:[P]`` from the same
initial vectors with AdamW at the same lr, on the same seeded batches of SST-2 16-shot (seed 42).
PEFT's ``PeftModelForCausalLM`` computes the causal-LM loss on the label token, which runs the
vocabulary head at *every* position; ours runs it at the answer position only and uses the class
cross-entropy over the label words. Step times interleave ours and PEFT's (so load on the machine
hits both alike); accuracy of each trained prompt is scored by our Evaluator on the 16-shot dev
split (a fixed slice; nothing is selected on it).

    python -m benchmarks.perf_soft [--quick] [--steps N] [--data-dir DIR]

writes ``results/perf/soft.json``; the last line is ``step time ratio ours/peft: <R>``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import numpy as np
import torch

from autoprompt_search import Evaluator, Prompt, load_model
from autoprompt_search.data.loaders import load_lmbff
from autoprompt_search.scoring.rows import pad_rows
from autoprompt_search.searchers import PromptTuningSearcher, SearchContext
from autoprompt_search.searchers.soft.trainer import batch_indices

from .common import data_dir, environment, write_result

VERBALIZER = {"0": "negative", "1": "positive"}


class PeftTrainer:
    """PEFT's prompt tuning on a copy of the model, trained the way PEFT's docs train it."""

    def __init__(self, lm, init: torch.Tensor, lr: float, encoder, prompt: Prompt) -> None:
        from peft import PromptTuningConfig, get_peft_model

        config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=init.shape[0])
        self.model = get_peft_model(copy.deepcopy(lm.model), config)
        self.model.prompt_encoder["default"].embedding.weight.data.copy_(init)
        self.optimizer = torch.optim.AdamW(self.model.prompt_encoder.parameters(), lr=lr, weight_decay=0.0)
        self.lm, self.encoder, self.prompt, self.n = lm, encoder, prompt, init.shape[0]

    def step(self, batch) -> float:
        seqs, labels = [], []
        for example in batch:
            encoded = self.encoder.encode(self.prompt, example)
            word = self.encoder.word_ids(VERBALIZER[example.label], encoded.text_before)
            text = list(encoded.before[self.n :])  # the ids after the virtual tokens
            seqs.append(text + list(word))
            labels.append([-100] * len(text) + list(word))
        ids, mask = pad_rows(self.lm, seqs)
        target = torch.full_like(ids, -100)
        for b, row in enumerate(labels):
            target[b, : len(row)] = torch.tensor(row)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.model(input_ids=ids, attention_mask=mask, labels=target).loss
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def vectors(self) -> torch.Tensor:
        return self.model.prompt_encoder["default"].embedding.weight.detach().clone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run: 3 steps, 4 tokens, batch 4")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    steps, tokens, batch_size = (3, 4, 4) if args.quick else (args.steps, args.tokens, args.batch_size)
    lm = load_model("smollm2-135m", device="cpu")
    task = load_lmbff(data_dir(args.data_dir), "SST-2", seed=42)
    template = f"[V*{tokens}]Review: {{sentence}}\nSentiment:[P]"
    evaluator = Evaluator(lm)
    ours = PromptTuningSearcher(templates=[template], verbalizers=[VERBALIZER], lr=args.lr, batch_size=batch_size,
                                steps=steps + 1, eval_every=10**9, patience=None, seed=42)
    ctx = SearchContext(task, lm, evaluator, np.random.default_rng(0), task.split("train"), task.split("dev"), 42)
    ours._prepare(ctx)
    init = ours.param.materialise().soft.detach().clone()
    peft = PeftTrainer(lm, init, args.lr, evaluator.encoder, ours._prompt)
    times: dict[str, list[float]] = {"ours": [], "peft": []}
    for _ in range(steps):
        rows, _, _ = batch_indices(len(ctx.train), batch_size, ours.seed, ours._epoch, ours._cursor)
        started = time.perf_counter()
        ours.step(ctx)
        times["ours"].append(time.perf_counter() - started)
        batch = [ctx.train[i] for i in rows]  # the batch ours just trained on
        started = time.perf_counter()
        peft.step(batch)
        times["peft"].append(time.perf_counter() - started)
    dev = task.split("dev")
    accuracy = {name: evaluator.evaluate(dataclasses.replace(ours._prompt, soft=vectors), dev, task)["accuracy"]
                for name, vectors in (("init", init), ("ours", ours.param.materialise().soft.detach()),
                                      ("peft", peft.vectors()))}
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["ours"] / median["peft"]
    result = {"environment": environment(), "template": template, "steps": steps, "batch_size": batch_size,
              "tokens": tokens, "lr": args.lr, "step_seconds": times, "median_step_seconds": median,
              "dev_accuracy": accuracy, "dev_examples": len(dev), "ratio_ours_over_peft": ratio, "quick": args.quick}
    path = write_result("soft" + ("-quick" if args.quick else ""), result)
    print(f"median step: ours {median['ours']:.3f}s, PEFT {median['peft']:.3f}s; dev accuracy (n={len(dev)}): "
          f"init {accuracy['init']:.3f}, ours {accuracy['ours']:.3f}, PEFT {accuracy['peft']:.3f}")
    print(f"wrote {path}")
    print(f"step time ratio ours/peft: {ratio:.2f}")


if __name__ == "__main__":
    main()
