"""Deep prompts (per-layer key/value prefixes) against references that do not use our cache path.

Causal LMs: a deep prompt made of the keys/values a real text prefix produces must act exactly like
that text (run in one full forward pass, with the text at positions 0..T-1). BERT: a hand-written
encoder forward that concatenates the prefix in front of every layer's keys/values. Batching:
rows with longer, shorter or no prefixes in one padded batch equal each row alone.
"""

from __future__ import annotations

import pytest
import torch

from autoprompt_search.errors import PromptFileError
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.scoring import deep_prompt
from autoprompt_search.scoring.deep_prompt import KVShape, kv_shape
from autoprompt_search.scoring.rows import pad_rows

ATOL = 1e-4


def random_deep(lm: LanguageModel, n: int, seed: int) -> torch.Tensor:
    shape = kv_shape(lm)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape.layers, 2, shape.kv_heads, n, shape.head_dim, generator=generator)


def text_ids(lm: LanguageModel, text: str) -> list[int]:
    return list(lm.prefix_ids) + lm.tokenize(text)


def test_kv_shape_reads_gqa_heads(tiny_causal_lm, tiny_gpt2_lm, tiny_masked_lm) -> None:
    assert kv_shape(tiny_causal_lm) == KVShape(layers=2, kv_heads=2, head_dim=8)  # 4 query heads share 2
    assert kv_shape(tiny_gpt2_lm) == KVShape(layers=2, kv_heads=4, head_dim=8)
    assert kv_shape(tiny_masked_lm) == KVShape(layers=2, kv_heads=4, head_dim=8)


@pytest.fixture(scope="module")
def smollm() -> LanguageModel:
    from autoprompt_search import load_model

    return load_model("smollm2-135m")


@pytest.mark.parametrize("lm_name", ["tiny_causal_lm", "tiny_gpt2_lm",
                                     pytest.param("smollm", marks=pytest.mark.slow)])  # the real GQA model
def test_causal_deep_prompt_of_real_text_equals_that_text(request: pytest.FixtureRequest, lm_name: str) -> None:
    lm = request.getfixturevalue(lm_name)
    prefix = lm.tokenize("Paris is the capital of France.")
    text = text_ids(lm, "the movie is great")
    ids = torch.tensor([prefix + text])
    # text_prefix's convention: a rotary model runs the prefix text at -P..-1, right before the text's 0..T-1
    start = -len(prefix) if lm.rotary_positions else 0
    positions = torch.cat([torch.arange(start, start + len(prefix)), torch.arange(len(text))]).unsqueeze(0)
    with torch.no_grad():
        out = lm.model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions,
                                  use_cache=True)
        cache = out.get("cache") or out.get("past_key_values")
        deep = torch.stack([torch.stack([layer.keys[0, :, : len(prefix)], layer.values[0, :, : len(prefix)]])
                            for layer in cache.layers])  # (layers, 2, kv_heads, P, head_dim)
        padded, mask = pad_rows(lm, [text])
        ours = deep_prompt.hidden_states(lm, mask, [deep], input_ids=padded)
    torch.testing.assert_close(ours[0], out[0][0, len(prefix) :], atol=ATOL, rtol=0)
    if not lm.prefix_ids:  # no BOS: text_prefix computes exactly these keys and values
        torch.testing.assert_close(deep_prompt.text_prefix(lm, prefix), deep, atol=ATOL, rtol=0)


def _bert_reference(lm: LanguageModel, ids: list[int], deep: torch.Tensor) -> torch.Tensor:
    """BERT's encoder written out by hand, with ``deep`` prepended to every layer's keys/values."""
    bert = lm.model.base_model
    hidden = bert.embeddings(input_ids=torch.tensor([ids]))  # positions 0..T-1
    for index, layer in enumerate(bert.encoder.layer):
        attention = layer.attention.self
        heads, width = attention.num_attention_heads, attention.attention_head_size

        def split(x: torch.Tensor, heads: int = heads, width: int = width) -> torch.Tensor:
            return x.view(1, -1, heads, width).transpose(1, 2)  # (1, heads, T, d)

        keys = torch.cat([deep[index, 0].unsqueeze(0), split(attention.key(hidden))], dim=2)
        values = torch.cat([deep[index, 1].unsqueeze(0), split(attention.value(hidden))], dim=2)
        weights = torch.softmax(split(attention.query(hidden)) @ keys.transpose(2, 3) / width**0.5, dim=-1)
        context = (weights @ values).transpose(1, 2).reshape(1, len(ids), heads * width)
        attended = layer.attention.output(context, hidden)
        hidden = layer.output(layer.intermediate(attended), attended)
    return hidden[0]


def test_masked_lm_deep_prompt_equals_hand_written_attention(tiny_masked_lm: LanguageModel) -> None:
    lm = tiny_masked_lm
    ids = text_ids(lm, "the movie is great") + list(lm.suffix_ids)
    deep = random_deep(lm, 5, seed=1)
    with torch.no_grad():
        padded, mask = pad_rows(lm, [ids])
        ours = deep_prompt.hidden_states(lm, mask, [deep], input_ids=padded)[0]
        reference = _bert_reference(lm, ids, deep)
        plain = lm.hidden_states(mask, input_ids=padded)[0]
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=0)
    assert (ours - plain).abs().max() > 100 * ATOL  # the prefix is not ignored


def test_rows_with_different_prefixes_in_one_batch_equal_each_alone(any_lm: LanguageModel) -> None:
    lm = any_lm
    texts = [text_ids(lm, t) for t in ("a great movie with good acting", "bad", "the capital of France is")]
    prefixes = [random_deep(lm, 6, seed=2), None, random_deep(lm, 2, seed=3)]
    with torch.no_grad():
        padded, mask = pad_rows(lm, texts)
        together = deep_prompt.hidden_states(lm, mask, prefixes, input_ids=padded)
        for b, (ids, prefix) in enumerate(zip(texts, prefixes, strict=True)):
            alone_ids, alone_mask = pad_rows(lm, [ids])
            alone = deep_prompt.hidden_states(lm, alone_mask, [prefix], input_ids=alone_ids)[0]
            # the row without a prefix, alone, takes the plain path with no cache at all
            torch.testing.assert_close(together[b, : len(ids)], alone, atol=ATOL, rtol=0)


def test_deep_prompt_is_differentiable(any_lm: LanguageModel) -> None:
    lm = any_lm
    deep = random_deep(lm, 3, seed=4).requires_grad_(True)
    padded, mask = pad_rows(lm, [text_ids(lm, "a great movie"), text_ids(lm, "bad")])
    hidden = deep_prompt.hidden_states(lm, mask, [deep, deep], input_ids=padded)
    lm.vocab_logits(hidden[:, -1]).log_softmax(-1)[:, 5].sum().backward()  # a loss at one position
    assert deep.grad is not None and deep.grad.shape == deep.shape
    assert deep.grad[:, 0].abs().sum() > 0 and deep.grad[:, 1].abs().sum() > 0  # keys and values both learn
    assert not any(p.grad is not None for p in lm.model.parameters())  # the model stays frozen


def test_check_deep_refuses_another_models_prompt(tiny_causal_lm, tiny_gpt2_lm) -> None:
    deep = random_deep(tiny_causal_lm, 3, seed=0)
    deep_prompt.check_deep(deep, tiny_causal_lm)
    with pytest.raises(PromptFileError, match=r"made for model 'tiny-llama'.*2 layers, 4 kv heads"):
        deep_prompt.check_deep(deep, tiny_gpt2_lm, made_for="tiny-llama")
    with pytest.raises(PromptFileError, match="layers, 2, kv heads"):
        deep_prompt.check_deep(deep[:, :1], tiny_causal_lm)
