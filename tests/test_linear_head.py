"""A linear head on the hidden state at [P] in place of the verbalizer: stored, scored, trained."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from autoprompt_search import Evaluator, Prompt
from autoprompt_search.errors import PromptFileError, TemplateError
from autoprompt_search.scoring.rows import pad_rows
from autoprompt_search.searchers import PromptTuningSearcher


def _head_prompt(lm, template="[V*2]{sentence} It was[P]", labels=("1", "0")) -> Prompt:
    g = torch.Generator().manual_seed(0)
    prompt = Prompt.build(template, None, soft=torch.randn(2, lm.hidden_size, generator=g))
    return dataclasses.replace(prompt, head=torch.randn(len(labels), lm.hidden_size + 1, generator=g),
                               head_labels=labels)


@pytest.mark.parametrize("model", ["tiny_causal_lm", "tiny_masked_lm"])
def test_evaluator_scores_the_head_on_the_answer_hidden_state(model, request, sentiment_task) -> None:
    lm = request.getfixturevalue(model)
    prompt = _head_prompt(lm)
    evaluator = Evaluator(lm)
    example = sentiment_task.split("dev")[0]
    scores = evaluator.score([prompt], [example], sentiment_task).scores[0, 0]  # task label order ("0", "1")
    encoded = evaluator.encoder.encode(evaluator.encoder.validate(prompt, sentiment_task), example)
    ids = list(encoded.before) if lm.is_causal else [*encoded.before, lm.mask_id, *encoded.after]
    at = len(encoded.before) - 1 if lm.is_causal else len(encoded.before)
    padded, mask = pad_rows(lm, [ids])
    embeds = lm.embed(padded)
    embeds[0, [p for p, _ in encoded.soft_before]] = prompt.soft
    with torch.no_grad():
        h = lm.hidden_states(mask, inputs_embeds=embeds)[0, at]
    logits = prompt.head[:, :-1] @ h + prompt.head[:, -1]  # rows in head_labels order ("1", "0")
    expected = torch.log_softmax(logits, dim=0).numpy()[::-1]
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)


def test_head_round_trips_through_prompt_files(tiny_causal_lm, tmp_path) -> None:
    prompt = _head_prompt(tiny_causal_lm)
    prompt.save(tmp_path)
    loaded = Prompt.load(tmp_path)
    assert torch.equal(loaded.head, prompt.head) and loaded.head_labels == ("1", "0")
    assert (tmp_path / "prompt.json").read_text().count('"head"') == 1


def test_a_head_for_other_labels_or_a_fact_task_is_refused(tiny_causal_lm, sentiment_task, fact_task) -> None:
    evaluator = Evaluator(tiny_causal_lm)
    with pytest.raises(PromptFileError, match="train a head for this task"):
        evaluator.score([_head_prompt(tiny_causal_lm, labels=("a", "b"))], sentiment_task.split("dev"), sentiment_task)
    with pytest.raises(TemplateError, match="fact task"):
        evaluator.score([_head_prompt(tiny_causal_lm, "[V*2]{sub_label} is[P]", labels=("x",))],
                        fact_task.split("dev"), fact_task)


def test_training_a_head_without_label_words(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    searcher = PromptTuningSearcher(templates=["[V*2]{sentence} It was[P]"], head=True, lr=0.05, batch_size=12,
                                    steps=8, eval_every=4, seed=0)
    result = searcher.search(sentiment_task, tiny_causal_lm, run_dir=tmp_path, progress=False)
    assert result.prompt.head.shape == (2, tiny_causal_lm.hidden_size + 1) and result.prompt.verbalizer is None
    losses = [r.scores["train_loss"] for r in result.history]
    assert losses[0] == pytest.approx(np.log(2), abs=1e-5)  # the zero head starts at uniform class scores
    assert min(losses[1:]) < losses[0]
    reloaded = Prompt.load(tmp_path)
    assert Evaluator(tiny_causal_lm).evaluate(reloaded, sentiment_task.split("test"), sentiment_task) \
        == result.test_metrics
