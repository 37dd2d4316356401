"""P-tuning (Liu et al., 2021, "GPT Understands, Too"): the ``[V]`` vectors are the output of a
small reparameterising encoder — a bidirectional LSTM and a two-layer MLP over trainable input
embeddings — so the prompt tokens are trained jointly rather than independently.

One change from the paper: the encoder's output is added to its input and the MLP's last layer
starts at zero (``residual=True``), so training starts *at* the initial vectors (vocab, label
words, a text, a saved prompt) instead of at a random point far off the embedding scale;
``residual=False`` is the paper's plain encoder. The checkpoint keeps the encoder (to resume);
the saved prompt keeps the materialised vectors (all inference needs, also for PEFT export).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ...errors import AutopromptError
from ...prompts.prompt import Prompt
from ..base import SearchContext, register
from .initialization import initial_vectors
from .prompt_tuning import soft_slots
from .trainer import Parameterization, PromptTensors, SoftSearcher

#: "paper": a GPU-sized setting after the paper's (Adam, small lr, long training with early stopping
#: on dev); the paper tunes lr per task, which is not restated here. "cpu": minutes on two cores.
PAPER = {"optimizer": "adamw", "lr": 1e-4, "weight_decay": 5e-4, "batch_size": 16, "steps": 3000,
         "eval_every": 100, "patience": 20, "warmup": 0}
CPU = {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.0, "batch_size": 8, "steps": 60, "eval_every": 10,
       "patience": 3, "warmup": 0}


class ReparamEncoder(nn.Module):
    """``(n, H)`` input embeddings → bi-LSTM (or nothing) → MLP → ``(n, H)`` soft vectors."""

    def __init__(self, init: torch.Tensor, kind: Literal["lstm", "mlp"], hidden: int, residual: bool,
                 seed: int) -> None:
        super().__init__()
        width = init.shape[1]
        self.inputs = nn.Parameter(init.clone())
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the global RNG
            torch.manual_seed(seed)
            self.lstm = nn.LSTM(width, hidden // 2, num_layers=2, bidirectional=True, batch_first=True) \
                if kind == "lstm" else None
            self.mlp = nn.Sequential(nn.Linear(hidden if self.lstm else width, hidden), nn.ReLU(),
                                     nn.Linear(hidden, width))
        self.residual = residual
        if residual:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self) -> torch.Tensor:
        x = self.inputs[None]  # (1, n, H)
        if self.lstm is not None:
            x = self.lstm(x)[0]  # (1, n, hidden)
        out = self.mlp(x)[0]  # (n, H)
        return self.inputs + out if self.residual else out


class Reparameterised(Parameterization):
    def __init__(self, encoder: ReparamEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def materialise(self) -> PromptTensors:
        return PromptTensors(soft=self.encoder())


@register
class PTuningSearcher(SoftSearcher):
    """Trains a prompt encoder whose output fills the ``[V*n]`` slots (presets ``cpu``, ``paper``)."""

    name = "p-tuning"
    presets: ClassVar[dict[str, dict[str, Any]]] = {"cpu": CPU, "paper": PAPER}

    def __init__(self, *, encoder: Literal["lstm", "mlp"] = "lstm", encoder_hidden: int | None = None,
                 residual: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if encoder not in ("lstm", "mlp"):
            raise AutopromptError(f"unknown P-tuning encoder {encoder!r}: use 'lstm' or 'mlp'")
        self.encoder, self.encoder_hidden, self.residual = encoder, encoder_hidden, residual


    def parameterization(self, ctx: SearchContext, prompt: Prompt) -> Parameterization:
        n = soft_slots(prompt.template, self.template)
        init = initial_vectors(ctx, prompt, n, self.init, self.seed)
        hidden = self.encoder_hidden or ctx.model.hidden_size
        if hidden < 2:
            raise AutopromptError(f"encoder_hidden={hidden} is too small: give at least 2")
        return Reparameterised(ReparamEncoder(init, self.encoder, hidden, self.residual, self.seed))
