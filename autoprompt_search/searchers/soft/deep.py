"""What the deep-prompt searchers (P-tuning v2, prefix-tuning) share: the prefix length, templates
without ``[V]`` slots (the prompt lives in every layer's keys and values instead), and where the
prefix starts.

``init`` names one of:

- ``"random"``: N(0, 1) entries — what P-tuning v2's released code does (a default ``nn.Embedding``);
- ``"vocab"`` (default): the keys/values the model computes for distinct tokens sampled from the
  training examples' text (Li & Liang 2021, section 7.4: real words' activations train better than
  random ones, most of all in low-data settings);
- ``"labels"``: the same for the label words (fact tasks: the training objects), cycled;
- ``"text:<words>"``: the same for a text, cycled to the prefix length;
- ``"prompt:<path>"``: the deep prompt of a saved prompt (e.g. trained on another task).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from ...errors import AutopromptError, PromptFileError, TemplateError
from ...prompts.prompt import Prompt
from ...scoring.deep_prompt import kv_shape, text_prefix
from ..base import SearchContext
from .initialization import init_token_ids, parse_init
from .trainer import SoftSearcher


class DeepSearcher(SoftSearcher):
    """Base of the searchers that train a ``prefix_length``-slot deep prompt."""

    default_template: ClassVar[str] = "{sentence} It was[P]"

    def __init__(self, *, prefix_length: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if prefix_length < 1:
            raise AutopromptError(f"prefix_length={prefix_length} must be at least 1 (e.g. 10)")
        self.prefix_length = prefix_length


    def _check_template(self, template, ctx: SearchContext) -> None:
        super()._check_template(template, ctx)
        if template.n_soft:
            raise TemplateError(
                f"template {self.template!r} has [V] slots, but {self.name} trains per-layer prefixes, not input "
                "vectors: drop the [V] slots (the prefix length is the prefix_length option), or use "
                "--searcher prompt-tuning"
            )

    def initial_prefix(self, ctx: SearchContext, prompt: Prompt) -> torch.Tensor:
        """``(layers, 2, kv_heads, prefix_length, head_dim)`` float32 starting keys and values."""
        n, init, lm = self.prefix_length, parse_init(self.init), ctx.model
        generator = torch.Generator().manual_seed(self.seed)
        if init.kind == "random":
            shape = kv_shape(lm)
            return torch.randn(shape.layers, 2, shape.kv_heads, n, shape.head_dim, generator=generator)
        if init.kind == "prompt":
            return _saved_prefix(Path(init.argument), n, lm, kv_shape(lm))
        return text_prefix(lm, init_token_ids(ctx, prompt, init, n, generator))


def _saved_prefix(path: Path, n: int, lm, shape) -> torch.Tensor:
    saved = Prompt.load(path)
    want = [shape.layers, 2, shape.kv_heads, n, shape.head_dim]
    if saved.deep is None or list(saved.deep.shape) != want:
        have = None if saved.deep is None else list(saved.deep.shape)
        raise PromptFileError(
            f"init prompt {path} has a deep prompt of shape {have}, but this search needs {want} on {lm.name!r}: "
            "use a prompt trained on the same model, with prefix_length equal to its prefix"
        )
    return saved.deep.float().clone()
