"""AutoPrompt and label-word search on tiny models: the algorithm's pieces, not just the contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autoprompt_search import Budget, Evaluator, Prompt
from autoprompt_search.errors import ConfigError, TemplateError, VerbalizerError
from autoprompt_search.models.vocabulary import clean_token_mask
from autoprompt_search.scoring.differentiable import answer_log_probs, trigger_gradient
from autoprompt_search.searchers import AutoPromptSearcher, LabelSearcher
from autoprompt_search.searchers.labels import _rank_assignments

VERBALIZER = {"0": "bad", "1": "good"}


def test_trigger_loss_equals_evaluator_gold_logprob(any_lm, sentiment_task) -> None:
    template = "{sentence} [T*2] It was[P]." if not any_lm.is_causal else "{sentence} [T*2] It was[P]"
    prompt = Prompt.build(template, {"0": ["bad", "terrible"], "1": "good"}).with_triggers((40, 41))
    evaluator = Evaluator(any_lm)
    batch = list(sentiment_task.split("train"))[:6]
    words = {"0": ["bad", "terrible"], "1": ["good"]}
    text_before = evaluator.encoder.encode(evaluator.encoder.validate(prompt, sentiment_task), batch[0]).text_before
    gold = [[evaluator.encoder.word_ids(w, text_before)[0] for w in words[e.label]] for e in batch]
    grad, loss = trigger_gradient(evaluator.encoder, prompt, batch, gold)
    measured = evaluator.evaluate(prompt, batch, sentiment_task)
    assert loss == pytest.approx(-measured["gold_logprob"] * len(batch), abs=1e-3)
    assert grad.shape == (2, any_lm.hidden_size) and grad.abs().sum() > 0
    classes = [[evaluator.encoder.word_ids(w, text_before)[0] for w in words[label]] for label in ("0", "1")]
    class_grad, class_loss = trigger_gradient(evaluator.encoder, prompt, batch, gold, classes)
    assert class_loss == pytest.approx(-measured["class_logprob"] * len(batch), abs=1e-3)
    assert class_loss < loss and not torch.allclose(class_grad, grad)


def test_autoprompt_swaps_tokens_and_reports(any_lm, sentiment_task) -> None:
    template = "{sentence} [T*3] It was[P]." if not any_lm.is_causal else "{sentence} [T*3] It was[P]"
    searcher = AutoPromptSearcher(templates=[template], verbalizers=[VERBALIZER], num_cand=8, batch_size=6,
                                  iterations=4, confirm=False, seed=1)
    result = searcher.search(sentiment_task, any_lm, budget=Budget(iterations=4), progress=False)
    assert len(result.history) == 4
    assert {"incumbent", "best_candidate", "accepted", "slot"} <= set(result.history[0].scores)
    for record in result.history:
        if record.scores["accepted"]:
            assert record.scores["best_candidate"] > record.scores["incumbent"]
    allowed = clean_token_mask(any_lm)
    assert all(allowed[t] for t in result.prompt.trigger_ids)
    # 1e-6: the same prompt scored among candidates and alone shares a different prefix (fp32 rounding)
    assert result.dev_score >= max(r.best_score for r in result.history[:1]) - 1e-6


def test_autoprompt_refuses_multi_token_label_words_and_missing_slots(tiny_causal_lm, sentiment_task) -> None:
    with pytest.raises(VerbalizerError, match="single-token"):
        AutoPromptSearcher(templates=["{sentence} [T] It was[P]"], verbalizers=[{"0": "bad", "1": "fantastic"}],
                           iterations=1).search(sentiment_task, tiny_causal_lm, progress=False)
    with pytest.raises(TemplateError, match="no \\[T\\] slots"):
        AutoPromptSearcher(templates=["{sentence} It was[P]"], verbalizers=[VERBALIZER],
                           iterations=1).search(sentiment_task, tiny_causal_lm, progress=False)


def test_autoprompt_unknown_preset_and_objective(tiny_causal_lm, fact_task) -> None:
    with pytest.raises(ConfigError, match="unknown AutoPrompt preset"):
        AutoPromptSearcher(preset="huge")
    with pytest.raises(ConfigError, match="unknown AutoPrompt objective"):
        AutoPromptSearcher(objective="margin")
    with pytest.raises(TemplateError, match="use objective='vocab'"):
        AutoPromptSearcher(templates=["The capital of {sub_label} [T] is[P]"], objective="class",
                           iterations=1).search(fact_task, tiny_causal_lm, progress=False)


def test_autoprompt_class_objective_ranks_by_class_normalised_logprob(tiny_causal_lm, sentiment_task) -> None:
    """The incumbent's reported score is the class-normalised gold log-prob of the batch it was scored on."""
    searcher = AutoPromptSearcher(templates=["{sentence} [T*2] It was[P]"], verbalizers=[VERBALIZER], num_cand=4,
                                  batch_size=100, iterations=1, confirm=False, objective="class", seed=3)
    result = searcher.search(sentiment_task, tiny_causal_lm, budget=Budget(iterations=1), progress=False)
    first = result.history[0].scores
    train = list(sentiment_task.split("train"))  # a batch as large as the split is the whole split
    initial = Prompt.build("{sentence} [T*2] It was[P]", VERBALIZER).with_triggers(
        [tiny_causal_lm.tokenize(" the")[0]] * 2)
    expected = Evaluator(tiny_causal_lm).evaluate(initial, train, sentiment_task)
    assert first["incumbent"] == pytest.approx(expected["class_logprob"], abs=1e-4)
    assert first["incumbent"] != pytest.approx(expected["gold_logprob"], abs=1e-3)
    assert result.config["objective"] == "class"


def test_rank_assignments_orders_by_training_accuracy() -> None:
    # 4 examples, 2 classes, vocabulary of 4: token 2 marks class 0, token 3 marks class 1.
    log_probs = np.log(np.array([[0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.6, 0.2], [0.2, 0.1, 0.1, 0.6],
                                 [0.1, 0.2, 0.1, 0.6]]))
    gold = np.array([0, 0, 1, 1])
    ranked = _rank_assignments(log_probs, gold, [[0, 2], [1, 3]])
    assert ranked[0] == (2, 3)
    assert all(len(set(combo)) == 2 for combo in ranked)


def test_label_search_words_map_back_to_their_tokens(any_lm, sentiment_task) -> None:
    template = "{sentence} It was[P]." if not any_lm.is_causal else "{sentence} It was[P]"
    result = LabelSearcher(templates=[template], top_k=4, finalists=5, per_step=5, ensemble=1, seed=0).search(
        sentiment_task, any_lm, progress=False)
    words = result.prompt.verbalizer.words
    assert set(words) == {"0", "1"} and words["0"] != words["1"]
    evaluator = Evaluator(any_lm)
    log_probs = answer_log_probs(evaluator.encoder, Prompt.build(template), sentiment_task.split("train"))
    assert log_probs.shape == (len(sentiment_task.split("train")), any_lm.vocab_size)
    assert np.allclose(log_probs.exp().sum(-1).numpy(), 1, atol=1e-4)
