"""Evaluator throughput against the reference way of scoring, in one run on one machine.

(a) reference: one candidate per forward pass, full-vocabulary logits at every position, fp32
    (how AutoPrompt's reference code scores candidates);
(b) ours, fp32: all candidates × examples batched, vocabulary head at answer positions only;
(c) ours, bf16;
(d) ours, fp32 with shared-prefix reuse (the input text before the trigger slots runs once);
(e) ours, fp32, prefix reuse + label-only head (softmax over label words).

AutoPrompt-style candidates on SST-2: ``Review: {sentence} [T*3]\\nSentiment:[P]``, candidates
differing in the last trigger. The reference's cost is linear in candidates by construction (one
pass each), so it is timed on at most ``--reference-cap`` candidates and reported per pair.

    python -m benchmarks.perf_evaluator [--quick] [--data-dir DIR]

writes ``results/perf/evaluator.json``; the last line is ``speedup prefix-reuse vs reference: <N>x``.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from autoprompt_search import Evaluator, Prompt, load_model
from autoprompt_search.data.loaders import load_lmbff, load_task
from autoprompt_search.scoring import metrics
from autoprompt_search.scoring.score_table import ScoreTable

from .common import data_dir, environment, matmul_peak, timed, write_result

TEMPLATE = "Review: {sentence} [T*3]\nSentiment:[P]"
VERBALIZER = {"0": "negative", "1": "positive"}


#: AutoPrompt's own SST-2 layout: the triggers right before the answer slot.
TEMPLATE_TRIGGERS_LAST = "{sentence} [T*3] Sentiment:[P]"


def candidates(lm, n: int, seed: int = 0, template: str = TEMPLATE) -> list[Prompt]:
    """n prompts: triggers ' the the X' with X drawn from word-like vocabulary tokens."""
    rng = np.random.default_rng(seed)
    the = lm.tokenize(" the")[0]
    words = [i for i in range(lm.vocab_size) if lm.decode([i]).startswith(" ") and lm.decode([i])[1:].isalpha()]
    base = Prompt.build(template, VERBALIZER)
    picks = rng.choice(words, size=n, replace=False)
    return [base.with_triggers((the, the, int(x))) for x in picks]


@torch.inference_mode()
def reference_scores(evaluator: Evaluator, prompts: list[Prompt], examples, task) -> np.ndarray:
    """(C, E, L) class log-probs, one forward pass per candidate, full logits at all positions."""
    lm, enc = evaluator.model, evaluator.encoder
    out = np.empty((len(prompts), len(examples), len(task.labels)))
    for c, prompt in enumerate(prompts):
        prompt = enc.validate(prompt, task)
        encoded = [enc.encode(prompt, e) for e in examples]
        width = max(len(x.before) for x in encoded)
        ids = torch.full((len(examples), width), lm.pad_id)
        mask = torch.zeros_like(ids)
        for i, x in enumerate(encoded):
            ids[i, : len(x.before)], mask[i, : len(x.before)] = torch.tensor(x.before), 1
        log_probs = torch.log_softmax(lm.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        for i, x in enumerate(encoded):
            words = enc.label_word_ids(prompt, x)
            out[c, i] = [log_probs[i, len(x.before) - 1, w[0][0]].item() for w in words]
    return out


def model_flops(lm, tokens: int) -> float:
    """Forward FLOPs for ``tokens`` tokens: 2 × non-embedding parameters per token (attention aside)."""
    body = sum(p.numel() for n, p in lm.model.base_model.named_parameters() if "embed" not in n)
    return 2.0 * body * tokens


def run(quick: bool, data: str | None, reference_cap: int) -> dict[str, Any]:
    lm = load_model("smollm2-135m", device="cpu")
    root = data_dir(data)
    task = load_lmbff(root, "SST-2", seed=42)
    examples = list(load_task(root / "SST-2" / "glue" / "dev.tsv").split("test"))
    task = task.with_splits(test=examples)
    n_examples = 8 if quick else 32
    counts = [1, 10] if quick else [1, 10, 100]
    batch = examples[:n_examples]
    peak = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    bf16_usable = peak["bfloat16"] >= 0.5 * peak["float32"]
    variants = {
        "b_ours_fp32": dict(reuse_prefix=False),
        "c_ours_bf16": dict(reuse_prefix=False, dtype="bfloat16"),
        "d_prefix_reuse": dict(reuse_prefix=True),
        "e_prefix_reuse_label_head": dict(reuse_prefix=True, normalize="labels"),
    }
    rows: list[dict[str, Any]] = []
    tables: dict[tuple[str, int], ScoreTable] = {}
    for n in counts:
        prompts = candidates(lm, n)
        ref_prompts = prompts[: min(n, reference_cap)]
        ev = Evaluator(lm)
        seconds, ref = timed(lambda ev=ev, ref_prompts=ref_prompts: reference_scores(ev, ref_prompts, batch, task))
        rows.append({"variant": "a_reference", "candidates": n, "measured_candidates": len(ref_prompts),
                     "examples": n_examples, "seconds": seconds,
                     "pairs_per_s": len(ref_prompts) * n_examples / seconds})
        for name, options in variants.items():
            if name == "c_ours_bf16" and (n > 10 or (not bf16_usable and n > 1)):
                continue  # bf16 without bf16 matrix units is far slower: time it once, at 1 candidate
            ev = Evaluator(lm, **options)
            seconds, table = timed(lambda ev=ev, prompts=prompts: ev.score(prompts, batch, task))
            tables[(name, n)] = table
            rows.append({"variant": name, "candidates": n, "examples": n_examples, "seconds": seconds,
                         "pairs_per_s": n * n_examples / seconds, "rows": ev.forward_rows,
                         "tokens": ev.forward_tokens,
                         "flop_per_s": model_flops(lm, ev.forward_tokens) / seconds,
                         "fraction_of_peak": model_flops(lm, ev.forward_tokens) / seconds
                         / peak[options.get("dtype", "float32")]})
        for name in ("b_ours_fp32", "d_prefix_reuse"):
            same = (tables[(name, n)].scores[: len(ref_prompts)].argmax(-1) == ref.argmax(-1)).mean()
            assert same == 1.0, f"{name} disagrees with the reference on {1 - same:.1%} of pairs at {n} candidates"
    rows.extend(layout_rows(lm, task, batch, counts[-1], reference_cap))
    fidelity = bf16_fidelity(tables, counts)
    scaling = length_scaling(lm, task, examples, quick)
    top = counts[-1]
    ref_rate = next(r["pairs_per_s"] for r in rows if r["variant"] == "a_reference" and r["candidates"] == top)
    rate = {r["variant"]: r["pairs_per_s"] for r in rows if r["candidates"] == top and "last" not in r["variant"]}
    speedups = {name: value / ref_rate for name, value in rate.items()}
    return {"environment": environment(), "quick": quick, "matmul_peak_flop_per_s": peak,
            "bf16_faster_than_fp32_here": bf16_usable, "results": rows, "speedup_vs_reference_at_max": speedups,
            "bf16_fidelity": fidelity, "length_scaling": scaling, "max_candidates": top}


def layout_rows(lm, task, batch, n: int, reference_cap: int) -> list[dict[str, Any]]:
    """The same comparison with the triggers right before ``Sentiment:[P]`` (shorter suffix)."""
    prompts = candidates(lm, n, template=TEMPLATE_TRIGGERS_LAST)
    ev = Evaluator(lm)
    ref_s, _ = timed(lambda: reference_scores(ev, prompts[:reference_cap], batch, task))
    ours_s, _ = timed(lambda: ev.score(prompts, batch, task))
    ref_rate, ours_rate = min(n, reference_cap) * len(batch) / ref_s, n * len(batch) / ours_s
    return [{"variant": "a_reference_triggers_last", "candidates": n, "pairs_per_s": ref_rate, "seconds": ref_s},
            {"variant": "d_prefix_reuse_triggers_last", "candidates": n, "pairs_per_s": ours_rate, "seconds": ours_s,
             "speedup_vs_its_reference": ours_rate / ref_rate}]


def bf16_fidelity(tables: dict, counts: list[int]) -> dict[str, Any]:
    """bf16 vs fp32 on the same pairs: per-pair argmax agreement, candidate rank correlation, top-1."""
    n = max(c for c in counts if ("c_ours_bf16", c) in tables)
    fp32, bf16 = tables[("b_ours_fp32", n)], tables[("c_ours_bf16", n)]
    agree = float((fp32.scores.argmax(-1) == bf16.scores.argmax(-1)).mean())
    a, b = candidate_scores(fp32), candidate_scores(bf16)
    rho = float(spearmanr(a, b).statistic) if n > 1 else None
    return {"candidates": n, "pair_argmax_agreement": agree, "candidate_spearman": rho,
            "top1_candidate_same": int(np.argmax(a)) == int(np.argmax(b)),
            "max_abs_logprob_diff": float(np.abs(fp32.scores - bf16.scores).max())}


def candidate_scores(table: ScoreTable) -> list[float]:
    return [metrics.selection_score(table.metrics(i), "classification") for i in range(table.scores.shape[0])]


def length_scaling(lm, task, examples, quick: bool) -> list[dict[str, Any]]:
    """Seconds vs input length (sentences cut to N words), 8 candidates × 16 examples, plain and prefix reuse."""
    prompts = candidates(lm, 4 if quick else 8)
    out = []
    for words in (4, 16, 48):
        cut = [type(e)({"sentence": " ".join(e.fields["sentence"].split()[:words])}, e.label)
               for e in examples[: 8 if quick else 16]]
        for reuse in (False, True):
            ev = Evaluator(lm, reuse_prefix=reuse)
            seconds, _ = timed(lambda ev=ev, cut=cut: ev.score(prompts, cut, task))
            out.append({"max_words": words, "prefix_reuse": reuse, "seconds": seconds,
                        "tokens_per_row": ev.forward_tokens / max(1, ev.forward_rows)})
    return out


def fidelity_only(data: str | None, n_candidates: int = 10, n_examples: int = 8) -> None:
    """bf16 vs fp32 on one AutoPrompt-style candidate set (for machines where bf16 is too slow to time)."""
    lm = load_model("smollm2-135m", device="cpu")
    root = data_dir(data)
    task = load_lmbff(root, "SST-2", seed=42)
    batch = list(load_task(root / "SST-2" / "glue" / "dev.tsv").split("test"))[:n_examples]
    prompts = candidates(lm, n_candidates)
    tables = {(name, n_candidates): Evaluator(lm, reuse_prefix=False, dtype=dtype).score(prompts, batch, task)
              for name, dtype in (("b_ours_fp32", "float32"), ("c_ours_bf16", "bfloat16"))}
    result = {"examples": n_examples, **bf16_fidelity(tables, [n_candidates]), "environment": environment()}
    print(f"bf16 fidelity: {result}")
    print(f"wrote {write_result('bf16-fidelity', result)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (seconds, not minutes)")
    parser.add_argument("--data-dir")
    parser.add_argument("--reference-cap", type=int, default=10)
    parser.add_argument("--bf16-fidelity", action="store_true",
                        help="only compare bf16 with fp32 on 10 candidates × 8 examples (writes bf16-fidelity.json)")
    args = parser.parse_args()
    if args.bf16_fidelity:
        fidelity_only(args.data_dir)
        return
    result = run(args.quick, args.data_dir, args.reference_cap)
    path = write_result("evaluator" + ("-quick" if args.quick else ""), result)
    for row in result["results"]:
        print(f"{row['variant']:28s} C={row['candidates']:4d}  {row['pairs_per_s']:8.1f} pairs/s")
    print(f"bf16 fidelity: {result['bf16_fidelity']}")
    last = next(r for r in result["results"] if r["variant"] == "d_prefix_reuse_triggers_last")
    print(f"triggers right before the answer: prefix reuse {last['speedup_vs_its_reference']:.1f}x its reference")
    print(f"wrote {path}")
    ratios = "  ".join(f"{k}={v:.1f}x" for k, v in result["speedup_vs_reference_at_max"].items())
    print(f"ratios vs reference at {result['max_candidates']} candidates: {ratios}")
    print(f"speedup prefix-reuse vs reference: {result['speedup_vs_reference_at_max']['d_prefix_reuse']:.1f}x")


if __name__ == "__main__":
    main()
