"""Contextual calibration (Zhao et al., 2021, "Calibrate Before Use: Improving Few-Shot Performance
of Language Models").

A prompt's label words carry a prior: SmolLM2 under ``{sentence} It was[P]`` says "great" for 862
of 872 SST-2 sentences. Calibration measures that prior on *content-free* inputs — ``N/A``, the
empty string and a mask token put into every field of the template — and divides it out:

    p_cf = mean over content-free inputs of softmax(class scores)          # (L,)
    calibrated = log_softmax(log p - log p_cf)                              # (E, L)

i.e. W = diag(p_cf)^-1 applied to the normalised class probabilities p, renormalised (the paper's
``softmax(W p)`` has the same argmax; the ratio keeps scores true log-probabilities).

Usage: ``Evaluator(lm, calibration="contextual")`` calibrates every prompt it scores (searchers
included); a prompt that carries its own :class:`Calibration` (loaded from ``prompt.json``) is
calibrated with it, and with its recorded ``p_cf`` if it has one, so a saved prompt scores the same
when evaluated again. Classification only: a fact task's answer space is the whole vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from ..errors import PromptFileError, TemplateError

CalibrationMode = Literal["contextual"]

#: Zhao et al.'s content-free inputs; ``MASK_TEXT`` becomes the model's mask token on masked LMs.
MASK_TEXT = "[MASK]"
CONTENT_FREE = ("N/A", "", MASK_TEXT)


@dataclass(frozen=True)
class Calibration:
    """How to calibrate: the mode, the content-free strings, and (once fitted) ``p_cf`` as
    ``(label, probability)`` pairs — the prior that was divided out, recorded with a saved prompt."""

    mode: CalibrationMode = "contextual"
    content_free: tuple[str, ...] = CONTENT_FREE
    p_cf: tuple[tuple[str, float], ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.mode != "contextual":
            raise TemplateError(f"unknown calibration mode {self.mode!r}: use 'contextual' (or no calibration)")
        if not self.content_free or not all(isinstance(s, str) for s in self.content_free):
            raise TemplateError('contextual calibration needs content-free strings, e.g. ("N/A", "", "[MASK]")')
        if self.p_cf is not None and any(not p > 0 for _, p in self.p_cf):
            raise TemplateError(f"calibration p_cf {self.p_cf} must be positive probabilities: refit it")

    @classmethod
    def coerce(cls, value: Calibration | str | None) -> Calibration | None:
        """Accept ``"contextual"``, ``"none"``/None or a Calibration (the Evaluator option)."""
        if value is None or isinstance(value, Calibration):
            return value
        if value == "none":
            return None
        return cls(mode=value)  # type: ignore[arg-type]

    @property
    def fitted(self) -> bool:
        return self.p_cf is not None

    def prior(self, labels: Sequence[str]) -> np.ndarray:
        """The recorded p_cf in ``labels`` order (L,); refused if it names other labels."""
        recorded = dict(self.p_cf or ())
        if set(recorded) != set(labels):
            raise PromptFileError(
                f"the prompt's calibration p_cf covers labels {sorted(recorded)} but the task has {list(labels)}: "
                "drop 'p_cf' from prompt.json to refit it on this task"
            )
        return np.array([recorded[label] for label in labels])

    def with_prior(self, labels: Sequence[str], p_cf: np.ndarray) -> Calibration:
        return replace(self, p_cf=tuple((label, float(p)) for label, p in zip(labels, p_cf, strict=True)))

    def unfitted(self) -> Calibration:
        return replace(self, p_cf=None)

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "content_free": list(self.content_free),
                "p_cf": None if self.p_cf is None else dict(self.p_cf)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        p_cf = data.get("p_cf")
        return cls(data.get("mode", "contextual"), tuple(data.get("content_free", CONTENT_FREE)),
                   None if p_cf is None else tuple((str(k), float(v)) for k, v in dict(p_cf).items()))


def content_free_values(strings: Sequence[str], mask_token: str | None) -> list[str]:
    """The content-free strings for one model: ``[MASK]`` becomes a masked LM's own mask token."""
    return [mask_token if s == MASK_TEXT and mask_token else s for s in strings]


def fit_prior(scores: np.ndarray) -> np.ndarray:
    """p_cf (L,): the mean normalised class probability over content-free inputs ``scores`` (N, L)."""
    log_p = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
    return np.exp(log_p).mean(axis=0)


def calibrate(scores: np.ndarray, p_cf: np.ndarray) -> np.ndarray:
    """Calibrated class log-probs (E, L) from class scores (E, L) and the prior p_cf (L,)."""
    shifted = scores - np.log(p_cf)
    return shifted - np.logaddexp.reduce(shifted, axis=1, keepdims=True)
