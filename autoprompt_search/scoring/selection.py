"""Selection that respects the noise: the score a search maximises, the paired-bootstrap guard, and
the options every searcher shares for its final pick.

Why: with 16 examples per class a dev split of 32 cannot tell a real gain from noise (one example
is 3.1 accuracy points), so picking the candidate with the best dev *accuracy* picks lucky ones
(Perez, Kiela & Cho 2021, "True Few-Shot Learning with Language Models"). The mean class
log-likelihood (the negative log-loss of the classifier a prompt induces, renormalised over the
classes) uses every example's margin, not just its sign; accuracy only breaks its ties. A guard
keeps the given prompt unless a candidate beats it by more than resampling noise: the lower
bound of a paired bootstrap of the per-example gain must be above zero.

Fact tasks keep their metric: P@1, ties broken by the gold object's log-prob.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import logsumexp

from ..errors import ConfigError
from ..prompts.ensemble import Combine
from . import metrics as _metrics

SelectBy = Literal["logloss", "accuracy"]
SelectOn = Literal["dev", "all"]
CalibrateChoice = Literal["choose", "off"]

#: Weight of the tie-break term: far below any real difference of the main term.
_TIE = 1e-6


def selection_score(metrics: Mapping[str, float], kind: str, by: SelectBy = "logloss",
                    tiebreak: str = "gold_logprob") -> float:
    """The number a search maximises for one candidate.

    Classification, ``by="logloss"``: mean class log-likelihood (``class_logprob``), ties broken by
    accuracy. ``by="accuracy"``: accuracy, ties broken by ``tiebreak`` (the earlier default, kept
    for the ablation). Fact tasks: P@1, ties broken by the gold log-prob, whatever ``by`` says.
    """
    if kind == "classification" and by == "logloss":
        return float(metrics["class_logprob"]) + _TIE * float(metrics["accuracy"])
    return _metrics.selection_score(dict(metrics), kind, tiebreak)


def class_loglik(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per-example log-likelihood of the gold class among the classes (E,), from class scores (E, L)."""
    keep = gold >= 0
    normalised = scores[keep] - logsumexp(scores[keep], axis=1, keepdims=True)
    return normalised[np.arange(int(keep.sum())), gold[keep]]


def bootstrap_lower(gain: np.ndarray, level: float, seed: int, resamples: int = 2000) -> float:
    """Lower ``level`` confidence bound of the mean of the per-example ``gain`` (paired bootstrap,
    Efron & Tibshirani 1993): the ``1 - level`` quantile of the mean over resampled examples."""
    if len(gain) == 0:
        return float("-inf")
    rng = np.random.default_rng(seed)
    means = gain[rng.integers(0, len(gain), size=(resamples, len(gain)))].mean(axis=1)
    return float(np.quantile(means, 1.0 - level))


@dataclass(frozen=True)
class GuardResult:
    """The guard's numbers: mean per-example log-likelihood gain over the reference, its lower
    bound at ``level``, and whether the candidate passes (bound above zero)."""

    level: float
    gain: float
    lower: float
    passed: bool

    def to_json(self) -> dict[str, float | bool]:
        return {"level": self.level, "gain": self.gain, "lower": self.lower, "passed": self.passed}


def guard(candidate: np.ndarray, reference: np.ndarray, level: float, seed: int) -> GuardResult:
    """Compare per-example class log-likelihoods of a candidate and the reference on the same examples."""
    gain = np.asarray(candidate, dtype=float) - np.asarray(reference, dtype=float)
    lower = bootstrap_lower(gain, level, seed)
    return GuardResult(level, float(gain.mean()) if len(gain) else 0.0, lower, bool(lower > 0))


@dataclass(frozen=True)
class SelectionPolicy:
    """How a searcher makes its final pick (the options of :class:`SelectionOptions`).

    ``by``: the score (see :func:`selection_score`). ``select_on``: ``dev``, or ``all`` labelled
    examples (train ∪ dev) for both search and selection. ``calibrate``: ``choose`` scores each
    finalist plain and contextually calibrated (Zhao et al. 2021) and keeps the better variant;
    ``off`` leaves calibration to the Evaluator. ``ensemble``: return the top ``k`` variants as one
    ensemble prompt (:mod:`prompts.ensemble`), combined by ``combine``. ``guard``: a confidence level (e.g.
    0.9); the given prompt is kept unless the pick's paired-bootstrap lower bound of gain is > 0.
    """

    by: SelectBy = "logloss"
    select_on: SelectOn = "dev"
    calibrate: CalibrateChoice = "choose"
    ensemble: int = 1
    combine: Combine = "mean"
    guard: float | None = None

    def __post_init__(self) -> None:
        checks = {"select_by": (self.by, ("logloss", "accuracy")), "select_on": (self.select_on, ("dev", "all")),
                  "calibrate": (self.calibrate, ("choose", "off")), "combine": (self.combine, ("mean", "logistic"))}
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ConfigError(f"unknown {name} {value!r}: use one of {', '.join(allowed)}")
        if not isinstance(self.ensemble, int) or self.ensemble < 1:
            raise ConfigError(f"ensemble={self.ensemble!r} must be a whole number >= 1 (1: a single prompt)")
        if self.guard is not None and not 0 < self.guard < 1:
            raise ConfigError(f"guard={self.guard!r} is a confidence level between 0 and 1 (e.g. 0.9), or null: off")

    @property
    def final_stage(self) -> bool:
        """Whether the final pick needs its own scoring pass (calibration choice, ensemble, guard)."""
        return self.calibrate == "choose" or self.ensemble > 1 or self.guard is not None


class SelectionOptions:
    """Mixin of the searchers whose final pick runs through :mod:`searchers.final`: the shared
    options, stored under their own names (``config()`` reads them by the signature), and the
    policy they make."""

    select_by: SelectBy
    select_on: SelectOn
    calibrate: CalibrateChoice
    ensemble: int
    combine: Combine
    guard: float | None

    def set_selection(self, **options: Any) -> None:
        """Store the selection options under their own names; the defaults and the checks are
        :class:`SelectionPolicy`'s (one place), so a bad value is refused now."""
        policy = SelectionPolicy(**{"by" if name == "select_by" else name: value for name, value in options.items()})
        self.select_by, self.select_on, self.calibrate = policy.by, policy.select_on, policy.calibrate
        self.ensemble, self.combine, self.guard = policy.ensemble, policy.combine, policy.guard

    def selection_policy(self) -> SelectionPolicy:
        return SelectionPolicy(self.select_by, self.select_on, self.calibrate, self.ensemble, self.combine, self.guard)


def top_indices(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` best scores, best first (ties: the earlier index)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
