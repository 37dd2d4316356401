"""Leaderboard statistics: mean ± std over seeds, and each searcher against the manual baseline.

Seeds are the unit of replication (LM-BFF's protocol: five k-shot splits, mean and standard
deviation over them; the std is numpy's default, ddof=0, as LM-BFF reports it). A comparison is
paired twice over: per seed, both prompts are scored on the same test examples, so McNemar's exact
test (a binomial test on the discordant examples) says whether that seed's difference is more than
noise; over seeds, a paired bootstrap of the per-seed deltas gives a confidence interval of the
mean delta. Everything is deterministic: the bootstrap uses a fixed seed.

Generated text has no per-example correctness, and corpus BLEU is no mean of per-example scores,
so a generation seed is tested with Koehn's (2004) paired bootstrap instead of McNemar: resample
the test inputs, re-sum both prompts' n-gram statistics, recompute both corpus BLEUs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest

from autoprompt_search.scoring.text_metrics import bleu_from_statistics

ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
#: Resamples of test inputs per generation seed (each recomputes two corpus BLEUs; sacrebleu's own
#: paired bootstrap uses 1000 too).
INPUT_RESAMPLES = 1000


@dataclass(frozen=True)
class McNemar:
    """Discordant counts on paired examples and the exact two-sided p-value.

    ``baseline_only``: examples only the baseline gets right; ``other_only``: only the other does.
    """

    baseline_only: int
    other_only: int
    p_value: float


@dataclass(frozen=True)
class PairedBootstrap:
    """Koehn's paired bootstrap of a corpus metric on one seed's test inputs.

    ``delta``: other − baseline on the real test set; ``p_value``: two-sided, twice the smaller
    share of resamples whose delta is ≤ 0 or ≥ 0 (capped at 1).
    """

    delta: float
    p_value: float


PairedTest = Callable[[Any, Any], "McNemar | PairedBootstrap"]


@dataclass(frozen=True)
class Comparison:
    """A searcher against the baseline on one task, over the seeds both have."""

    seeds: tuple[int, ...]
    deltas: tuple[float, ...]  # other − baseline test score, per seed
    mean_delta: float
    ci_low: float
    ci_high: float
    wins: int  # seeds where the other searcher scores higher
    significant_wins: int  # ... and McNemar p < ALPHA
    significant_losses: int
    tests: tuple[McNemar | PairedBootstrap, ...]

    @property
    def mark(self) -> str:
        """``▲``/``▼`` when the bootstrap CI excludes 0 *and* McNemar is significant in the same
        direction on at least half of the seeds: a consistent gain (loss), not one lucky split."""
        half = len(self.seeds) / 2
        if self.ci_low > 0 and self.significant_wins >= half:
            return "▲"
        if self.ci_high < 0 and self.significant_losses >= half:
            return "▼"
        return ""


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0, as LM-BFF reports over its five seeds)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std())


def mcnemar_exact(baseline_correct: Sequence[bool], other_correct: Sequence[bool]) -> McNemar:
    """McNemar's exact test on paired per-example correctness (binomial on discordant pairs, p=½)."""
    base = np.asarray(baseline_correct, dtype=bool)
    other = np.asarray(other_correct, dtype=bool)
    if base.shape != other.shape:
        raise ValueError(f"paired test needs the same examples: {base.shape} vs {other.shape} predictions")
    b, c = int(np.sum(base & ~other)), int(np.sum(~base & other))
    p = 1.0 if b + c == 0 else float(binomtest(min(b, c), b + c, 0.5).pvalue)
    return McNemar(b, c, min(1.0, p))


def paired_bootstrap_bleu(
    baseline_statistics: Sequence[Sequence[int]], other_statistics: Sequence[Sequence[int]], *,
    resamples: int = INPUT_RESAMPLES, seed: int = BOOTSTRAP_SEED,
) -> PairedBootstrap:
    """Paired bootstrap of corpus BLEU over test inputs, from each input's sacrebleu statistics
    (:func:`~autoprompt_search.scoring.text_metrics.bleu_statistics`) under both prompts."""
    base, other = np.asarray(baseline_statistics), np.asarray(other_statistics)
    if base.shape != other.shape:
        raise ValueError(f"paired test needs the same inputs: {base.shape} vs {other.shape} statistics")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(base), size=(resamples, len(base)))
    base_sums, other_sums = base[picks].sum(1), other[picks].sum(1)  # (resamples, 10) corpus statistics
    deltas = np.array([bleu_from_statistics([o]) - bleu_from_statistics([b]) for o, b in zip(other_sums, base_sums,
                                                                                             strict=True)])
    p = 2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0))
    return PairedBootstrap(bleu_from_statistics(other) - bleu_from_statistics(base), float(min(1.0, p)))


def bootstrap_ci(
    deltas: Sequence[float], *, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of paired deltas (seeds resampled with replacement)."""
    array = np.asarray(deltas, dtype=float)
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, len(array), size=(resamples, len(array)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def compare(
    baseline: dict[int, tuple[float, Any]], other: dict[int, tuple[float, Any]],
    paired_test: PairedTest = mcnemar_exact,
) -> Comparison | None:
    """Compare per-seed ``(test score, per-example evidence)`` of two searchers on one task; the
    evidence is what ``paired_test`` reads (per-example correctness for McNemar, per-input BLEU
    statistics for :func:`paired_bootstrap_bleu`).

    Only seeds both have count; ``None`` when there are none.
    """
    seeds = tuple(sorted(set(baseline) & set(other)))
    if not seeds:
        return None
    deltas = tuple(other[s][0] - baseline[s][0] for s in seeds)
    tests = tuple(paired_test(baseline[s][1], other[s][1]) for s in seeds)
    low, high = bootstrap_ci(deltas)
    return Comparison(
        seeds=seeds, deltas=deltas, mean_delta=float(np.mean(deltas)), ci_low=low, ci_high=high,
        wins=sum(d > 0 for d in deltas),
        significant_wins=sum(d > 0 and t.p_value < ALPHA for d, t in zip(deltas, tests, strict=True)),
        significant_losses=sum(d < 0 and t.p_value < ALPHA for d, t in zip(deltas, tests, strict=True)),
        tests=tests,
    )
