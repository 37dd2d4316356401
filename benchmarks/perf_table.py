"""The leaderboard's speed and memory section: one row per record the ``perf_*`` benchmarks wrote.

Why here: the brief puts speed targets in benchmarks, measured as ratios in one run; rendering their
records beside the accuracy tables keeps one place to read every result. Each benchmark's headline
(the ratio its last printed line reports) is read from its own JSON, never re-measured.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PerfRecord:
    """How to read one ``results/perf/<name>.json``: what it measures, its headline, its command."""

    measures: str
    headline: Callable[[dict[str, Any]], str]
    command: str


def _evaluator(data: dict[str, Any]) -> str:
    ratios = data["speedup_vs_reference_at_max"]
    return (f"{ratios['d_prefix_reuse']:.1f}x with prefix reuse, {ratios['b_ours_fp32']:.1f}x without "
            f"({data['max_candidates']} candidates)")


PERF_RECORDS: dict[str, PerfRecord] = {
    "evaluator": PerfRecord("Evaluator throughput vs the reference (one candidate per forward pass, full logits)",
                            _evaluator, "python -m benchmarks.perf_evaluator"),
    "bf16-fidelity": PerfRecord(
        "bf16 vs fp32 scores of 10 candidates x 8 examples",
        lambda d: (f"argmax agreement {100 * d['pair_argmax_agreement']:.1f} %, candidate Spearman "
                   f"{d['candidate_spearman']:.3f}, same top-1: {'yes' if d['top1_candidate_same'] else 'no'}"),
        "python -m benchmarks.perf_evaluator --bf16-fidelity"),
    "autoprompt": PerfRecord("one AutoPrompt iteration vs the reference implementation's way",
                             lambda d: f"{d['speedup']:.1f}x", "python -m benchmarks.perf_autoprompt"),
    "generate": PerfRecord(
        "batched greedy generation with the KV cache vs one example at a time (tokens/s)",
        lambda d: f"{d['speedup']:.1f}x, identical texts {d['identical_texts']}/{d['examples']}",
        "python -m benchmarks.perf_generate"),
    "mixed": PerfRecord("one Evaluator run over SST-2 + TREC + LAMA vs one run per task (examples/s)",
                        lambda d: f"{d['speedup']:.2f}x", "python -m benchmarks.perf_mixed"),
    "test-set": PerfRecord(
        "one prompt on a test set: its text before the input (instruction, soft vectors) run once vs per example",
        lambda d: " / ".join(f"{s['prompt']} {s['speedup']:.2f}x" for s in d["shapes"]),
        "python -m benchmarks.perf_test_set"),
    "soft": PerfRecord("prompt-tuning step time, ours / PEFT's (below 1: ours faster)",
                       lambda d: f"{d['ratio_ours_over_peft']:.2f}", "python -m benchmarks.perf_soft"),
    "memory": PerfRecord(
        "resident memory while scoring every SST-2 training sentence in chunks",
        lambda d: (f"+{d['growth_from_4096_to_all_mib']:.0f} MiB from 4,096 to {d['n_scored']:,} examples "
                   f"(peak {d['peak_rss_mib']['after_all_examples']:.0f} MiB)"),
        "python -m benchmarks.memory_bound"),
}


def perf_rows(folder: Path) -> list[list[str]]:
    """The section's table (header row first), or no rows when no benchmark has written a record."""
    paths = sorted(folder.glob("*.json"))
    if not paths:
        return []
    rows = [["benchmark", "measures", "result", "threads", "regenerate"]]
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = PERF_RECORDS.get(path.stem)
        if known is None:
            raise ValueError(f"{path}: no headline rule for this benchmark record; add one to "
                             "benchmarks/perf_table.PERF_RECORDS")
        threads = (data.get("environment") or {}).get("threads", "?")
        rows.append([path.stem, known.measures, known.headline(data), str(threads), f"`{known.command}`"])
    return rows
