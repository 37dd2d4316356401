"""Ensembles of prompts as one result: several member prompts (discrete, soft or mixed) and a rule.

Why: on few examples, picking one winner picks a lucky one, while aggregating many imperfect
prompts is the steady gain (Arora et al. 2022, "Ask Me Anything": +10.2 % over few-shot
prompting; measured outside this project on SST-2 16-shot, the mean of the top-10 prompts by
log-loss beat the manual template on all 5 seeds with a tenth of the spread of single picks).

Rules: ``mean`` averages the members' class log-probs (each renormalised over the classes, and
calibrated where the member is); ``logistic`` learns one weight per member and one bias per class
on the selection data (a small multinomial logistic combination, pulled towards the plain mean by
an L2 penalty so that 32 examples cannot overfit it far). The members of every ensemble in one
Evaluator call are scored together, in one mixed run (:meth:`Evaluator.score_many`).

Saved as ``prompt.json`` with ``"kind": "ensemble"`` and each member in ``members/<i>/``;
:func:`load_prompt` loads either kind of prompt file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from scipy.special import logsumexp

from .. import atomic
from ..errors import PromptFileError, TemplateError
from .prompt import FORMAT_VERSION, JSON_NAME, ModelSignature, Prompt

KIND = "ensemble"
#: How member scores combine: the mean of class log-probs, or learned weights (:mod:`scoring.ensembles`).
Combine = Literal["mean", "logistic"]


@dataclass(frozen=True)
class EnsemblePrompt:
    """Member prompts and how their class scores combine (classification only).

    ``weights`` (one per member) and ``bias`` (one per class of ``labels``) are set for the
    ``logistic`` rule; the ``mean`` rule has none.
    """

    members: tuple[Prompt, ...]
    rule: Combine = "mean"
    weights: tuple[float, ...] | None = None
    bias: tuple[float, ...] | None = None
    labels: tuple[str, ...] = ()
    model: ModelSignature | None = None

    def __post_init__(self) -> None:
        if not self.members or not all(isinstance(m, Prompt) for m in self.members):
            raise TemplateError("an ensemble needs at least one member prompt (ensembles do not nest)")
        if self.rule not in ("mean", "logistic"):
            raise TemplateError(f"unknown ensemble rule {self.rule!r}: use 'mean' or 'logistic'")
        if self.rule == "logistic" and (self.weights is None or len(self.weights) != len(self.members)
                                        or self.bias is None or len(self.bias) != len(self.labels)):
            raise TemplateError("a logistic ensemble needs one weight per member and one bias per label")

    # The Prompt surface the rest of the toolkit reads (CLI output, run records).
    @property
    def soft(self) -> torch.Tensor | None:
        parts = [m.soft for m in self.members if m.soft is not None]
        return torch.cat(parts) if parts else None

    @property
    def trigger_ids(self) -> tuple[int, ...]:
        return tuple(i for m in self.members for i in m.trigger_ids)

    verbalizer = None
    calibration = None
    demos = None

    def render(self, decode: Any = None) -> str:
        """One line per member: its template, label words and whether it is calibrated."""
        def member(m: Prompt) -> str:
            words = "/".join("+".join(w) for w in m.verbalizer.words.values()) if m.verbalizer else ""
            return m.render(decode) + (f" [{words}]" if words else "") + (" (calibrated)" if m.calibration else "")

        return f"ensemble ({self.rule}) of {len(self.members)}: " + " || ".join(member(m) for m in self.members)

    def with_members(self, members: Sequence[Prompt]) -> EnsemblePrompt:
        return replace(self, members=tuple(members))

    def combine(self, scores: np.ndarray) -> np.ndarray:
        """Combined class log-probs (E, L) from the members' class scores (M, E, L)."""
        return combine(scores, self.rule, self.weights, self.bias)

    # --- persistence ---------------------------------------------------------------------------
    def to_json(self, decode: Any = None) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "kind": KIND, "rule": self.rule, "rendered": self.render(decode),
                "weights": None if self.weights is None else list(self.weights),
                "bias": None if self.bias is None else dict(zip(self.labels, self.bias, strict=True)),
                "model": vars(self.model) if self.model else None,
                "members": [{"dir": f"members/{i}", **m.to_json(decode)} for i, m in enumerate(self.members)]}

    def save(self, folder: str | Path, decode: Any = None) -> Path:
        """Each member into ``members/<i>/``, then ``prompt.json`` (atomically, last)."""
        folder = Path(folder)
        for i, member in enumerate(self.members):
            member.save(folder / "members" / str(i), decode)
        atomic.write_json(folder / JSON_NAME, self.to_json(decode))
        return folder / JSON_NAME

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Path) -> EnsemblePrompt:
        """The ensemble a ``prompt.json`` of kind ``ensemble`` in ``folder`` describes."""
        try:
            members = tuple(Prompt.load(folder / str(entry["dir"])) for entry in data["members"])
            bias = data.get("bias")
            labels = tuple(str(k) for k in bias) if bias else ()
            return cls(members, data.get("rule", "mean"),
                       None if data.get("weights") is None else tuple(float(w) for w in data["weights"]),
                       None if not bias else tuple(float(v) for v in bias.values()), labels,
                       ModelSignature(**data["model"]) if data.get("model") else None)
        except (KeyError, TypeError, ValueError) as error:
            raise PromptFileError(
                f"{folder / JSON_NAME} is not a valid ensemble prompt ({type(error).__name__}: {error}): restore it "
                "and its members/ folder from the run directory, or run the search again"
            ) from None


def combine(scores: np.ndarray, rule: Combine = "mean", weights: Sequence[float] | None = None,
            bias: Sequence[float] | None = None) -> np.ndarray:
    """Members' class scores (M, E, L) → combined class log-probs (E, L), renormalised over classes."""
    log_p = scores - logsumexp(scores, axis=2, keepdims=True)
    if rule == "mean":
        z = log_p.mean(axis=0)
    else:
        z = np.tensordot(np.asarray(weights, dtype=float), log_p, axes=1) + np.asarray(bias, dtype=float)
    return z - logsumexp(z, axis=1, keepdims=True)


def load_prompt(path: str | Path) -> Prompt | EnsemblePrompt:
    """A saved prompt of either kind: an ensemble (``"kind": "ensemble"``) or a single :class:`Prompt`."""
    path = Path(path)
    file = path / JSON_NAME if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        data = None  # Prompt.load says what is wrong with it
    if isinstance(data, dict) and data.get("kind") == KIND:
        return EnsemblePrompt.from_json(data, file.parent)
    return Prompt.load(path)
