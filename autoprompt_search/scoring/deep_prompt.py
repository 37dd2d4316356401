"""Deep prompts: trainable keys and values in front of every attention layer.

A deep prompt (prefix-tuning, Li & Liang 2021; P-tuning v2, Liu et al. 2022) is a tensor
``(layers, 2, kv_heads, n_prefix, head_dim)``: for each layer, ``n_prefix`` key and value vectors
every token of the input attends to, as if a prefix had been run before it. It enters the frozen
model through the model's own cache interface (a ``DynamicCache`` holding the prefix), so no
model code is patched and the attention kernels stay the library's:

- Llama family (GQA): the cache holds keys/values per *key-value* head, exactly what the layer
  stores, and ``repeat_kv`` shares them across the query heads of each group. Cached keys are
  post-RoPE, so a prefix key is used as given (it has no position of its own).
- GPT-2: the same cache path (absolute positions are added to the input embeddings only).
- BERT family (not decoders): ``BertModel`` forwards a given cache to every self-attention layer,
  which concatenates it in front of the layer's keys/values, and builds its bidirectional mask
  from the 2-D attention mask's width when that covers the cache (the path transformers keeps for
  PEFT's prefix tuning). So a masked LM needs nothing else either; every token sees the prefix.

Positions: the text keeps positions ``0..T-1``, exactly as without a prefix, in training and at
inference alike. (The original implementations passed ``past_key_values`` to transformers versions
that shifted the text's positions by the prefix length; for RoPE models that shift changes nothing,
since text-to-text attention depends on relative positions and prefix keys are free parameters;
for absolute-position models, keeping the text where pre-training put it is the faithful choice and
keeps the full input length usable.) Rows with shorter or no prefixes are padded with masked-out
slots, so rows of different prompts share one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import PromptFileError
from ..models.language_model import LanguageModel


@dataclass(frozen=True)
class KVShape:
    """What a deep prompt is tied to: attention layers, key-value heads and head width."""

    layers: int
    kv_heads: int
    head_dim: int


def kv_shape(lm: LanguageModel) -> KVShape:
    """The cache layout of ``lm``, read from its config (GQA models have fewer kv heads)."""
    config = lm.model.config
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or lm.hidden_size // heads)
    return KVShape(int(config.num_hidden_layers), kv_heads, head_dim)


def deep_length(deep: torch.Tensor | None) -> int:
    """Number of prefix slots of a deep prompt (0 for none)."""
    return 0 if deep is None else int(deep.shape[3])


def check_deep(deep: torch.Tensor, lm: LanguageModel, made_for: str | None = None) -> None:
    """Refuse a deep prompt whose layout differs from ``lm``'s cache (it was made for another model)."""
    want = kv_shape(lm)
    shape = tuple(deep.shape)
    if len(shape) != 5 or shape[1] != 2 or (shape[0], shape[2], shape[4]) != (want.layers, want.kv_heads,
                                                                                   want.head_dim):
        source = f"model {made_for!r}" if made_for else "another model"
        raise PromptFileError(
            f"this deep prompt has shape {list(shape)} (layers, 2, kv heads, prefix, head dim), made for {source}, "
            f"but {lm.name!r} has {want.layers} layers, {want.kv_heads} kv heads of width {want.head_dim}: "
            "evaluate it with the model it was trained on, or train it again"
        )


def prefix_cache(lm: LanguageModel, prefixes: Sequence[torch.Tensor | None]) -> tuple[Any, torch.Tensor]:
    """A fresh cache holding each row's prefix, and its mask ``(B, P)`` (P = the longest prefix).

    Row ``b`` gets its prefix in slots ``0..n_b-1``; the rest (and rows without a prefix) are zero
    slots with mask 0. Differentiable in the prefixes. A forward pass appends to the cache in place,
    so build one per pass.
    """
    from transformers import DynamicCache

    shape = kv_shape(lm)
    width = max(deep_length(p) for p in prefixes)
    device, dtype = lm.device, lm.dtype
    mask = torch.zeros((len(prefixes), width), dtype=torch.long, device=device)
    for b, p in enumerate(prefixes):
        mask[b, : deep_length(p)] = 1
    if prefixes[0] is not None and all(p is prefixes[0] for p in prefixes):  # one prompt (training): a view
        table = prefixes[0].to(device, dtype).unsqueeze(0).expand(len(prefixes), *prefixes[0].shape)
    else:
        zeros = torch.zeros((shape.layers, 2, shape.kv_heads, width, shape.head_dim), device=device, dtype=dtype)
        table = torch.stack([zeros if p is None else torch.cat([p.to(device, dtype), zeros[:, :, :, p.shape[3] :]], 3)
                             for p in prefixes])  # (B, layers, 2, kv_heads, P, head_dim)
    cache = DynamicCache(config=lm.model.config)
    for layer in range(shape.layers):
        cache.update(table[:, layer, 0], table[:, layer, 1], layer)
    return cache, mask


def hidden_states(
    lm: LanguageModel,
    attention_mask: torch.Tensor,
    prefixes: Sequence[torch.Tensor | None],
    *,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Final hidden states ``(B, T, H)`` of right-padded rows, row ``b`` behind deep prompt ``prefixes[b]``."""
    if all(p is None for p in prefixes):
        return lm.hidden_states(attention_mask, input_ids=input_ids, inputs_embeds=inputs_embeds)
    cache, prefix_mask = prefix_cache(lm, prefixes)
    batch, length = attention_mask.shape
    positions = torch.arange(length, device=attention_mask.device).expand(batch, length)
    return lm.hidden_states(torch.cat([prefix_mask, attention_mask], dim=1), input_ids=input_ids,
                            inputs_embeds=inputs_embeds, past_key_values=cache, position_ids=positions)


@torch.no_grad()
def text_prefix(lm: LanguageModel, ids: Sequence[int]) -> torch.Tensor:
    """The deep prompt ``(layers, 2, kv_heads, len(ids), head_dim)`` holding the keys and values the
    model computes for the tokens ``ids`` (after its BOS/CLS, and before SEP on a masked LM).

    Li & Liang (2021, section 7.4) found that starting a prefix at real words' activations trains
    better than a random start, most of all with little data. A given cache is filled by causal
    and BERT-family models alike, so this needs no model-specific code.

    On a causal LM with rotary positions the text is run at positions ``-len(ids)..-1``, right
    before the ``0..T-1`` the prompted text keeps: a prefix of text activations then scores exactly
    as that text written in front of the prompt (keys carry their rotation; run at ``0..`` they
    would overlap the text's own positions and score worse). Absolute-position models cannot take
    negative positions and keep ``0..``.
    """
    from transformers import DynamicCache

    start = len(lm.prefix_ids)
    sequence = torch.tensor([[*lm.prefix_ids, *ids, *lm.suffix_ids]], device=lm.device)
    cache = DynamicCache(config=lm.model.config)
    positions = None
    if lm.is_causal and lm.rotary_positions:
        positions = torch.arange(sequence.shape[1], device=lm.device)[None] - sequence.shape[1]
    lm.hidden_states(torch.ones_like(sequence), input_ids=sequence, past_key_values=cache, position_ids=positions)
    return torch.stack([torch.stack([layer.keys[0, :, start : start + len(ids)],
                                     layer.values[0, :, start : start + len(ids)]])
                        for layer in cache.layers]).float().cpu()
