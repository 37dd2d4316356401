"""Peak memory of scoring a 67k-example data set: bounded by the chunk, not by the data set.

Uses the real SmolLM2 tokenizer and vocabulary with a tiny randomly initialised Llama body, so the
whole SST-2 train set (67,349 sentences) is loaded, planned and scored in minutes on 2 CPU cores;
what is measured is the toolkit's own memory (loader, plans, score tables), which a bigger model
does not change. Peak RSS after 4k examples and after all of them are compared.

    python -m benchmarks.memory_bound [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from autoprompt_search import Evaluator, LanguageModel, Prompt
from autoprompt_search.data.loaders import load_task
from autoprompt_search.models.embedded import converted_dir

from .common import data_dir, environment, write_result


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(converted_dir())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    lm = LanguageModel.wrap(LlamaForCausalLM(config), tokenizer, name="tiny-llama-smollm2-vocab")
    started = time.perf_counter()
    task = load_task(data_dir(args.data_dir) / "SST-2" / "glue" / "train.tsv")
    examples = task.split("test")
    after_load = peak_rss_mib()
    prompt = Prompt.build("Review: {sentence}\nSentiment:[P]", {"0": "negative", "1": "positive"})
    evaluator = Evaluator(lm, chunk_pairs=4096)
    small = evaluator.evaluate(prompt, examples[:4096], task)
    after_small = peak_rss_mib()
    full = evaluator.evaluate(prompt, examples, task)
    after_full = peak_rss_mib()
    result = {"examples": len(examples), "chunk_pairs": 4096, "peak_rss_mib": {"after_load": after_load,
              "after_4096_examples": after_small, "after_all_examples": after_full},
              "growth_from_4096_to_all_mib": after_full - after_small, "accuracy_random_model": full["accuracy"],
              "n_scored": full["n"], "n_small": small["n"], "seconds": time.perf_counter() - started,
              "environment": environment()}
    path = write_result("memory", result)
    print(f"{len(examples)} examples scored; peak RSS {after_small:.0f} MiB after 4096, {after_full:.0f} MiB after all")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
