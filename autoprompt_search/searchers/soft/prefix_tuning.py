"""Prefix-tuning (Li & Liang, 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation"):
per-layer keys and values produced by a reparameterising MLP — a small trainable matrix
``(n, H)`` → Linear → tanh → Linear → every layer's keys and values — which the paper found makes
training stable. Once trained, only the materialised prefix matters: that is what is saved (the
checkpoint keeps the MLP, to resume).

As in this package's P-tuning, ``residual=True`` adds the MLP's output to a fixed starting prefix
(``init``, real words' activations by default) and starts the MLP's last layer at zero, so training
starts *at* that prefix (Li & Liang, section 7.4, found real-word initialisation helps in low-data
settings); ``residual=False`` is the paper's plain MLP from a random start.

Presets: ``"paper"`` is the table-to-text setting (AdamW, lr 5e-5, batch 5, MLP width 512, prefix
length 10; the paper trains 10 epochs, here a step count). ``"cpu"``: a few minutes on two CPU
cores for a 16-shot task, lr 3e-4 — at 3e-3 the reparameterised prefix moved too far: E2E's
training loss diverged (3.0 → 17.8 in 3 steps) and on SST-2 16-shot the dev log-loss was worse at
every evaluation than at the start, on all five LM-BFF splits (selection data, not test).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import AutopromptError
from ...prompts.prompt import Prompt
from ...scoring.deep_prompt import kv_shape
from ..base import SearchContext, register
from .deep import DeepSearcher
from .trainer import Parameterization, PromptTensors

PAPER = {"optimizer": "adamw", "lr": 5e-5, "weight_decay": 0.0, "batch_size": 5, "steps": 5000,
         "eval_every": 500, "patience": None, "warmup": 0}
CPU = {"optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.0, "batch_size": 8, "steps": 60, "eval_every": 10,
       "patience": 3, "warmup": 0}


class PrefixMLP(Parameterization):
    """``(n, H)`` inputs → Linear(H, hidden) → tanh → Linear(hidden, layers·2·kv_heads·head_dim) →
    a deep prompt ``(layers, 2, kv_heads, n, head_dim)`` (plus ``base`` when residual)."""

    def __init__(self, base: torch.Tensor, width: int, hidden: int, residual: bool, seed: int) -> None:
        super().__init__()
        self.shape = tuple(base.shape)  # (layers, 2, kv_heads, n, head_dim)
        layers, _, kv_heads, n, head_dim = self.shape
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the global RNG
            torch.manual_seed(seed)
            self.inputs = nn.Parameter(torch.randn(n, width))
            self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(),
                                     nn.Linear(hidden, layers * 2 * kv_heads * head_dim))
        self.register_buffer("base", base.clone() if residual else torch.zeros_like(base))
        if residual:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def materialise(self) -> PromptTensors:
        layers, two, kv_heads, n, head_dim = self.shape
        out = self.mlp(self.inputs).view(n, layers, two, kv_heads, head_dim)  # (n, L, 2, kv, d)
        return PromptTensors(deep=self.base + out.permute(1, 2, 3, 0, 4))


@register
class PrefixTuningSearcher(DeepSearcher):
    """Trains an MLP whose output is the key/value prefix of every layer (presets ``cpu``, ``paper``)."""

    name = "prefix-tuning"
    presets: ClassVar[dict[str, dict[str, Any]]] = {"cpu": CPU, "paper": PAPER}

    def __init__(self, *, mlp_hidden: int = 512, residual: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mlp_hidden < 1:
            raise AutopromptError(f"mlp_hidden={mlp_hidden} must be at least 1 (the paper uses 512)")
        self.mlp_hidden, self.residual = mlp_hidden, residual


    def parameterization(self, ctx: SearchContext, prompt: Prompt) -> Parameterization:
        if self.residual:
            base = self.initial_prefix(ctx, prompt)
        else:
            shape = kv_shape(ctx.model)
            base = torch.zeros(shape.layers, 2, shape.kv_heads, self.prefix_length, shape.head_dim)
        return PrefixMLP(base, ctx.model.hidden_size, self.mlp_hidden, self.residual, self.seed)
