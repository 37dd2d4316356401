"""Prompt tuning (Lester, Al-Rfou and Constant, 2021, "The Power of Scale for Parameter-Efficient
Prompt Tuning"): the ``[V]`` vectors themselves are the only parameters.

Presets: ``"paper"`` is the paper's setting (Adafactor, lr 0.3, weight decay 1e-5, batch 32,
30,000 steps; the paper's 100 tokens are the template's business: ``[V*100]{sentence}[P]``).
``"cpu"`` trains SST-2 16-shot in a few minutes on two CPU cores: few tokens, AdamW, a larger
step count per example, evaluation every 10 steps, early stopping after 3 evaluations without a
better dev log-loss. Its 150 steps were chosen by the soft-presets suite
(benchmarks/suites/soft-presets.yaml, 5 LM-BFF SST-2 seeds): the lowest mean dev log-loss of the
60-step preset and six one-change variants (-0.295 against -0.346 at 60 steps); lr 3e-3 or 3e-2,
20 vectors, vocabulary init and checkpoint averaging did not beat it. Early stopping still ended
three of those five runs at step 60; the other two found better prompts at steps 70 and 120.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...errors import TemplateError
from ...prompts.prompt import Prompt
from ..base import SearchContext, register
from .initialization import initial_vectors
from .trainer import Parameterization, PromptTensors, SoftSearcher

PAPER = {"optimizer": "adafactor", "lr": 0.3, "weight_decay": 1e-5, "batch_size": 32, "steps": 30000,
         "eval_every": 1000, "patience": None, "warmup": 0}
CPU = {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.0, "batch_size": 8, "steps": 150, "eval_every": 10,
       "patience": 3, "warmup": 0}


class Vectors(Parameterization):
    """The soft vectors as one trainable ``(n, H)`` matrix."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        self.soft = nn.Parameter(init.clone())

    def materialise(self) -> PromptTensors:
        return PromptTensors(soft=self.soft)


def soft_slots(template, source: str) -> int:
    """The number of ``[V]`` slots, refusing a template without any."""
    if not template.n_soft:
        raise TemplateError(
            f"template {source!r} has no [V] slots to train: add some, e.g. 'Review: {{sentence}}[V*8]\\nSentiment:[P]'"
        )
    return template.n_soft


@register
class PromptTuningSearcher(SoftSearcher):
    """Trains the ``[V*n]`` vectors of one template directly (presets ``cpu``, ``paper``)."""

    name = "prompt-tuning"
    presets: ClassVar[dict[str, dict[str, Any]]] = {"cpu": CPU, "paper": PAPER}

    def parameterization(self, ctx: SearchContext, prompt: Prompt) -> Parameterization:
        n = soft_slots(prompt.template, self.template)
        return Vectors(initial_vectors(ctx, prompt, n, self.init, self.seed))
