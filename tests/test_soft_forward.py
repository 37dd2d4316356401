"""The training forward gives the Evaluator's numbers, with gradients into the soft vectors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from autoprompt_search import Evaluator, Prompt
from autoprompt_search.scoring.soft_forward import soft_forward

TEMPLATES = [
    "[V*2]Review: {sentence}\nSentiment:[P]",
    "Review: {sentence}[V*3] It was[P]",
    "{sentence} It was[V][P]",
]


def _prompt(template: str, verbalizer, lm, seed: int = 0) -> Prompt:
    prompt = Prompt.build(template, verbalizer)
    soft = torch.randn(prompt.template.n_soft, lm.hidden_size, generator=torch.Generator().manual_seed(seed))
    return dataclasses.replace(prompt, soft=soft)


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("model", ["tiny_causal_lm", "tiny_masked_lm"])
def test_class_scores_match_the_evaluator(template, model, request, sentiment_task) -> None:
    lm = request.getfixturevalue(model)
    # a multi-token label word checks the sum over tokens, two words per label the log-sum-exp
    prompt = _prompt(template, {"0": ["bad", "terrible movie"], "1": "good"}, lm)
    evaluator = Evaluator(lm)
    examples = sentiment_task.split("dev")[:5]
    expected = evaluator.score([prompt], examples, sentiment_task).scores[0]
    checked = evaluator.encoder.validate(prompt, sentiment_task)
    soft = prompt.soft.clone().requires_grad_(True)
    batch = soft_forward(evaluator.encoder, checked, examples, sentiment_task, soft)
    np.testing.assert_allclose(batch.scores.detach().numpy(), expected, rtol=1e-4, atol=1e-4)
    batch.loss().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0


def test_soft_vectors_after_the_answer_train_on_a_masked_lm(tiny_masked_lm, sentiment_task) -> None:
    prompt = _prompt("{sentence} It was[P].[V*2]", {"0": "bad", "1": "good"}, tiny_masked_lm)
    evaluator = Evaluator(tiny_masked_lm)
    examples = sentiment_task.split("dev")[:4]
    expected = evaluator.score([prompt], examples, sentiment_task).scores[0]
    soft = prompt.soft.clone().requires_grad_(True)
    batch = soft_forward(evaluator.encoder, evaluator.encoder.validate(prompt, sentiment_task), examples,
                         sentiment_task, soft)
    np.testing.assert_allclose(batch.scores.detach().numpy(), expected, rtol=1e-4, atol=1e-4)
    batch.loss().backward()
    assert soft.grad.abs().sum() > 0


@pytest.mark.parametrize("model", ["tiny_causal_lm", "tiny_masked_lm"])
def test_fact_scores_are_the_gold_object_log_prob(model, request, fact_task) -> None:
    lm = request.getfixturevalue(model)
    prompt = _prompt("[V*2]The capital of {sub_label} is[P]", None, lm)
    evaluator = Evaluator(lm)
    examples = fact_task.split("dev")[:4]
    expected = evaluator.score([prompt], examples, fact_task).gold_logprob[0]
    soft = prompt.soft.clone().requires_grad_(True)
    batch = soft_forward(evaluator.encoder, evaluator.encoder.validate(prompt, fact_task), examples, fact_task, soft)
    np.testing.assert_allclose(batch.scores.detach().numpy(), expected, rtol=1e-4, atol=1e-4)
    assert torch.isclose(batch.loss(), -batch.scores.mean())


@pytest.mark.parametrize("deep", [False, True])
def test_shared_prefix_runs_once_with_the_same_loss_and_gradients(causal_lm, sentiment_task, deep,
                                                                  monkeypatch) -> None:
    """Every row starts with BOS, the soft vectors and "Review:": run once, the numbers must not move."""
    from autoprompt_search.scoring.deep_prompt import kv_shape

    prompt = _prompt("[V*3]Review: {sentence}\nSentiment:[P]", {"0": ["bad", "terrible movie"], "1": "good"},
                     causal_lm)
    shape = kv_shape(causal_lm)
    table = torch.randn(shape.layers, 2, shape.kv_heads, 2, shape.head_dim, generator=torch.Generator().manual_seed(3))
    evaluator = Evaluator(causal_lm)
    checked = evaluator.encoder.validate(prompt, sentiment_task)
    examples = sentiment_task.split("train")[:6]
    results = {}
    for reuse in (False, True):
        soft = prompt.soft.clone().requires_grad_(True)
        prefix = table.clone().requires_grad_(True) if deep else None
        batch = soft_forward(evaluator.encoder, checked, examples, sentiment_task, soft, deep=prefix,
                             reuse_prefix=reuse)
        batch.loss().backward()
        results[reuse] = (batch.scores.detach(), soft.grad, prefix.grad if deep else None)
    prefixes: list[int] = []
    real = causal_lm.prefix_cache
    monkeypatch.setattr(causal_lm, "prefix_cache", lambda mask, *a, **k: prefixes.append(mask.shape[0]) or
                        real(mask, *a, **k))
    soft_forward(evaluator.encoder, checked, examples, sentiment_task, prompt.soft, deep=table if deep else None)
    assert prefixes == [1]  # one prefix row for the whole batch
    for plain, shared in zip(results[False], results[True], strict=True):
        if plain is not None:
            torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-4)
    assert results[True][1].abs().sum() > 0
