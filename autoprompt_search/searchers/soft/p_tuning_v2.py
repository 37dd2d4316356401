"""P-tuning v2 (Liu et al., 2022, "P-Tuning v2: Prompt Tuning Can Be Comparable to Fine-tuning
Universally Across Scales and Tasks"): trainable keys and values at every layer, no
reparameterisation — the deep prompt tensor itself is the only parameter.

Presets: ``"paper"`` follows the released RoBERTa-large SuperGLUE scripts (AdamW, lr 1e-2, batch
32; the scripts train 100 epochs, here a step count, and use prefix lengths 8–128: pass
``prefix_length``). ``"cpu"``: a few minutes on two CPU cores for a 16-shot task.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...prompts.prompt import Prompt
from ..base import SearchContext, register
from .deep import DeepSearcher
from .trainer import Parameterization, PromptTensors

PAPER = {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.0, "batch_size": 32, "steps": 3000,
         "eval_every": 100, "patience": None, "warmup": 0}
CPU = {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.0, "batch_size": 8, "steps": 60, "eval_every": 10,
       "patience": 3, "warmup": 0}


class PrefixTable(Parameterization):
    """The deep prompt ``(layers, 2, kv_heads, n, head_dim)`` as one trainable tensor."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        self.deep = nn.Parameter(init.clone())

    def materialise(self) -> PromptTensors:
        return PromptTensors(deep=self.deep)


@register
class PTuningV2Searcher(DeepSearcher):
    """Trains a ``prefix_length``-slot key/value prefix at every layer (presets ``cpu``, ``paper``)."""

    name = "p-tuning-v2"
    presets: ClassVar[dict[str, dict[str, Any]]] = {"cpu": CPU, "paper": PAPER}

    def parameterization(self, ctx: SearchContext, prompt: Prompt) -> Parameterization:
        return PrefixTable(self.initial_prefix(ctx, prompt))
