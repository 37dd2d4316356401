"""A Prompt: template + verbalizer + what a searcher found (trigger ids, soft vectors, deep prefixes).

Saved as a human-readable ``prompt.json`` plus, for soft and deep prompts, ``prompt.safetensors``:
JSON and safetensors only, so loading a prompt can never run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .. import atomic
from ..errors import PromptFileError
from .calibration import Calibration
from .demonstrations import Demonstrations
from .template import Template, parse_template
from .verbalizer import Verbalizer

FORMAT_VERSION = 1
JSON_NAME = "prompt.json"
TENSOR_NAME = "prompt.safetensors"


@dataclass(frozen=True)
class ModelSignature:
    """What a prompt's ids and vectors are tied to: a vocabulary and an embedding width."""

    name: str
    vocab_size: int
    hidden_size: int


@dataclass(frozen=True)
class Prompt:
    """Everything needed to score an example: template, verbalizer (None for fact tasks),
    trigger token ids filling the ``[T]`` slots, soft vectors ``(n_soft, H)`` for ``[V]`` slots, and a
    deep prompt ``(layers, 2, kv_heads, n_prefix, head_dim)`` of per-layer keys/values (:mod:`deep_prompt`).

    ``head`` ``(L, H + 1)`` (weights and bias) is a trained linear classifier on the hidden state at
    ``[P]`` that replaces the verbalizer (P-tuning v2's head, for labels without natural words); its
    rows are the classes ``head_labels``.

    Optionally contextual calibration (:mod:`calibration`) and in-context demonstrations
    (:mod:`demonstrations`); None there means "as the Evaluator is configured"."""

    template: Template
    verbalizer: Verbalizer | None = None
    trigger_ids: tuple[int, ...] = ()
    soft: torch.Tensor | None = field(default=None, compare=False)
    model: ModelSignature | None = None
    deep: torch.Tensor | None = field(default=None, compare=False)
    head: torch.Tensor | None = field(default=None, compare=False)
    head_labels: tuple[str, ...] = ()
    calibration: Calibration | None = None
    demos: Demonstrations | None = None

    @classmethod
    def build(cls, template: str | Template, verbalizer: Verbalizer | str | dict | None = None, **kw: Any) -> Prompt:
        """Parse a template string and a verbalizer spec into a Prompt."""
        parsed = parse_template(template) if isinstance(template, str) else template
        verb = verbalizer if verbalizer is None or isinstance(verbalizer, Verbalizer) else Verbalizer.parse(verbalizer)
        return cls(parsed, verb, **kw)

    def with_triggers(self, ids: tuple[int, ...] | list[int]) -> Prompt:
        """The prompt with other trigger tokens (a fitted calibration prior no longer applies)."""
        calibration = self.calibration.unfitted() if self.calibration else None
        return replace(self, trigger_ids=tuple(int(i) for i in ids), calibration=calibration)

    def render(self, decode: Any = None) -> str:
        """The template with trigger tokens filled in, for people (``decode`` maps one id to text)."""
        tokens = [decode([i]) for i in self.trigger_ids] if decode and self.trigger_ids else None
        return self.template.render(tokens)

    def check_model(self, name: str, vocab_size: int, hidden_size: int) -> None:
        """Refuse a prompt whose ids or vectors were made for another vocabulary or width."""
        sig = self.model
        if sig is None:
            return
        vectors = any(t is not None for t in (self.soft, self.deep, self.head))
        if sig.vocab_size != vocab_size or (vectors and sig.hidden_size != hidden_size):
            raise PromptFileError(
                f"this prompt was made for model {sig.name!r} (vocabulary {sig.vocab_size}, hidden size "
                f"{sig.hidden_size}) but the model {name!r} has vocabulary {vocab_size}, hidden size "
                f"{hidden_size}: evaluate it with the model it was found on, or search again"
            )

    # --- persistence ---------------------------------------------------------------------------
    def to_json(self, decode: Any = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "template": self.template.source,
            "rendered": self.render(decode),
            "verbalizer": self.verbalizer.to_json() if self.verbalizer else None,
            "trigger_ids": list(self.trigger_ids),
            "trigger_tokens": [decode([i]) for i in self.trigger_ids] if decode else None,
            "model": vars(self.model) if self.model else None,
            "calibration": self.calibration.to_json() if self.calibration else None,
            "demonstrations": self.demos.to_json() if self.demos else None,
        }
        if self.soft is not None:
            data["soft"] = {"file": TENSOR_NAME, "shape": list(self.soft.shape)}
        if self.deep is not None:
            data["deep"] = {"file": TENSOR_NAME, "shape": list(self.deep.shape), "layout": DEEP_LAYOUT}
        if self.head is not None:
            data["head"] = {"file": TENSOR_NAME, "shape": list(self.head.shape), "labels": list(self.head_labels)}
        return data

    def save(self, folder: str | Path, decode: Any = None) -> Path:
        """Write ``prompt.json`` (and ``prompt.safetensors`` for soft and deep prompts) atomically."""
        from safetensors.torch import save_file

        folder = Path(folder)
        tensors = {name: t.detach().float().cpu().contiguous()
                   for name, t in (("soft", self.soft), ("deep", self.deep), ("head", self.head)) if t is not None}
        if tensors:
            atomic.write_with(folder / TENSOR_NAME, lambda tmp: save_file(tensors, tmp))
        atomic.write_json(folder / JSON_NAME, self.to_json(decode))
        return folder / JSON_NAME

    @classmethod
    def load(cls, path: str | Path) -> Prompt:
        """Load a prompt from ``prompt.json`` or its folder; every defect is a PromptFileError."""
        path = Path(path)
        if path.is_dir():
            path = path / JSON_NAME
        if not path.is_file():
            raise PromptFileError(f"no prompt file at {path}: give the prompt.json a search wrote")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            template = parse_template(data["template"])
            verbalizer = Verbalizer.from_json(data["verbalizer"]) if data.get("verbalizer") else None
            model = ModelSignature(**data["model"]) if data.get("model") else None
            triggers = tuple(int(i) for i in data.get("trigger_ids") or ())
            calibration = Calibration.from_json(data["calibration"]) if data.get("calibration") else None
            demos = Demonstrations.from_json(data["demonstrations"]) if data.get("demonstrations") else None
        except (OSError, KeyError, TypeError, ValueError, OverflowError, RecursionError) as error:
            # ValueError covers JSONDecodeError, UnicodeDecodeError and template/verbalizer/calibration errors;
            # OverflowError an "Infinity" trigger id; RecursionError absurdly nested JSON.
            raise PromptFileError(
                f"{path} is not a valid prompt file ({type(error).__name__}: {error}); it may be truncated or "
                "hand-edited: restore it from the run directory or run the search again"
            ) from None
        soft = _load_tensor(path.parent / TENSOR_NAME, data.get("soft"), "soft") if data.get("soft") else None
        deep = _load_tensor(path.parent / TENSOR_NAME, data.get("deep"), "deep") if data.get("deep") else None
        head = _load_tensor(path.parent / TENSOR_NAME, data.get("head"), "head") if data.get("head") else None
        labels = tuple(str(x) for x in data["head"].get("labels", ())) if head is not None else ()
        if head is not None and len(labels) != head.shape[0]:
            raise PromptFileError(f"{path} has a head of {head.shape[0]} rows for labels {list(labels)}: restore it "
                                  "from the run directory or train again")
        prompt = cls(template, verbalizer, triggers, soft, model, deep=deep, head=head, head_labels=labels,
                     calibration=calibration, demos=demos)
        if len(triggers) not in (0, template.n_triggers):
            raise PromptFileError(
                f"{path} has {len(triggers)} trigger ids for {template.n_triggers} [T] slots: give one id per slot "
                "(or none), or restore the file from the run directory"
            )
        if soft is not None and soft.shape[0] != template.n_soft:
            raise PromptFileError(
                f"{path} has {soft.shape[0]} soft vectors for {template.n_soft} [V] slots: the template and "
                f"{TENSOR_NAME} do not belong together; restore both from the same run directory"
            )
        return prompt


#: Axes of a saved deep prompt, recorded in prompt.json for people and other tools.
DEEP_LAYOUT = "layers, 2 (keys, values), kv_heads, prefix, head_dim"
#: Tensors a prompt file may hold: name → (axes in words, number of axes).
_TENSORS = {"soft": ("n_soft, hidden", 2), "deep": (DEEP_LAYOUT, 5), "head": ("labels, hidden + 1", 2)}


def _load_tensor(path: Path, meta: Any, name: str) -> torch.Tensor:
    """The float tensor ``name`` of ``prompt.safetensors``, checked against its prompt.json entry."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    axes, ndim = _TENSORS[name]
    if not isinstance(meta, dict) or not isinstance(meta.get("shape", []), list):
        raise PromptFileError(
            f"{path.parent / JSON_NAME} has a malformed {name!r} entry {meta!r}: it must read "
            f'{{"file": "{TENSOR_NAME}", "shape": [{axes}]}}; restore it from the run directory'
        )
    if not path.is_file():
        raise PromptFileError(f"{path} is missing: a {name} prompt needs its prompt.safetensors beside prompt.json")
    try:
        tensor = load_file(str(path))[name]
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        raise PromptFileError(
            f"{path} is corrupt or truncated ({error}): restore it from the run directory or train again"
        ) from None
    if tensor.ndim != ndim or not tensor.is_floating_point():
        raise PromptFileError(
            f"{path} holds a {tensor.dtype} {name} tensor of shape {list(tensor.shape)}, not floats ({axes}): "
            "restore it from the run directory or train again"
        )
    if list(tensor.shape) != list(meta.get("shape", tensor.shape)):
        raise PromptFileError(
            f"{path} holds {name} shape {list(tensor.shape)} but {JSON_NAME} says {meta['shape']}: the two files do "
            "not belong together; restore both from the same run directory"
        )
    return tensor
