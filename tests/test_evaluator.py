"""The Evaluator against independent references: full forward passes of the rendered prompt text.

Every reference below runs the *whole* model (``model(...).logits``) on one unpadded sequence
built from the rendered text (or from ids and embeddings spliced by hand), and reads log-softmax
values off it. The Evaluator instead packs many rows into padded batches, runs the encoder only
and applies the vocabulary head at answer positions only; the two must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evaluator_references import (
    ATOL,
    MULTI,
    SENTIMENT_WORDS,
    class_scores,
    full_logprobs,
    ids_of,
    one_by_one,
    prompts_for,
    teacher_forced,
    word_ids,
)

from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.prompts.verbalizer import Verbalizer
from autoprompt_search.scoring.evaluator import Evaluator

# --- batched == one by one ---------------------------------------------------------------------


@pytest.mark.parametrize("batch_tokens", [None, 40])
def test_batched_scores_equal_one_by_one(
    any_lm: LanguageModel, sentiment_task: Task, batch_tokens: int | None
) -> None:
    prompts = prompts_for(any_lm)
    examples = list(sentiment_task.split("dev"))[:10]
    evaluator = Evaluator(any_lm, batch_tokens=batch_tokens)
    table = evaluator.score(prompts, examples, sentiment_task)
    assert table.scores is not None and table.scores.shape == (3, 10, 2)
    single = one_by_one(Evaluator(any_lm), prompts, examples, sentiment_task)
    np.testing.assert_allclose(table.scores, single, atol=ATOL, rtol=0)
    # the scores really depend on the example and the prompt (so a mix-up could not pass)
    assert np.ptp(table.scores[:, :, 0], axis=1).min() > 0.05
    assert np.abs(table.scores[0] - table.scores[1]).max() > 0.05
    assert np.all(table.scores < 0)
    assert table.gold.tolist() == [1, 0] * 5
    assert evaluator.forward_rows > 10 and evaluator.forward_tokens > evaluator.forward_rows


def test_many_small_batches_match_one_batch(tiny_causal_lm: LanguageModel, sentiment_task: Task) -> None:
    prompts = prompts_for(tiny_causal_lm)
    examples = sentiment_task.split("test")
    one = Evaluator(tiny_causal_lm).score(prompts, examples, sentiment_task).scores
    many = Evaluator(tiny_causal_lm, batch_tokens=1).score(prompts, examples, sentiment_task).scores
    np.testing.assert_allclose(many, one, atol=ATOL, rtol=0)


# --- hand-computed references: classification ------------------------------------------------


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_causal_scores_equal_full_forward(
    causal_lm: LanguageModel, sentiment_task: Task, reduction: str
) -> None:
    verbalizer = Verbalizer.parse(SENTIMENT_WORDS, reduction=reduction)  # type: ignore[arg-type]
    assert len(word_ids(causal_lm, MULTI)) > 1 and len(word_ids(causal_lm, "good")) == 1
    prompt = Prompt.build("Review: {sentence}\nSentiment: [P]", verbalizer)
    examples = sentiment_task.split("dev")
    table = Evaluator(causal_lm).score([prompt], examples, sentiment_task)
    expected = [
        class_scores(causal_lm, verbalizer, f"Review: {e.fields['sentence']}\nSentiment:") for e in examples
    ]
    np.testing.assert_allclose(table.scores[0], expected, atol=ATOL, rtol=0)


def test_causal_single_token_word_is_last_position_log_softmax(
    causal_lm: LanguageModel, sentiment_task: Task
) -> None:
    prompt = Prompt.build("{sentence} It was[P]", {"0": "negative", "1": "positive"})
    example = sentiment_task.split("train")[0]
    table = Evaluator(causal_lm).score([prompt], [example], sentiment_task)
    lp = full_logprobs(causal_lm, ids_of(causal_lm, example.fields["sentence"] + " It was", special=True))[-1]
    expected = [lp[word_ids(causal_lm, w)[0]].item() for w in ("negative", "positive")]
    np.testing.assert_allclose(table.scores[0, 0], expected, atol=ATOL, rtol=0)


def test_causal_word_at_line_start_has_no_space(causal_lm: LanguageModel, sentiment_task: Task) -> None:
    prompt = Prompt.build("{sentence}\n[P]", {"0": "negative", "1": "positive"})
    example = sentiment_task.split("train")[1]
    table = Evaluator(causal_lm).score([prompt], [example], sentiment_task)
    expected = class_scores(causal_lm, prompt.verbalizer, example.fields["sentence"] + "\n")
    np.testing.assert_allclose(table.scores[0, 0], expected, atol=ATOL, rtol=0)
    context = ids_of(causal_lm, example.fields["sentence"] + "\n", special=True)
    spaced = [teacher_forced(causal_lm, context, word_ids(causal_lm, w)) for w in ("negative", "positive")]
    assert np.abs(np.array(spaced) - expected).max() > 0.05  # " negative" would score differently


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_masked_scores_equal_full_forward(
    tiny_masked_lm: LanguageModel, sentiment_task: Task, reduction: str
) -> None:
    verbalizer = Verbalizer.parse(SENTIMENT_WORDS, reduction=reduction)  # type: ignore[arg-type]
    prompt = Prompt.build("{sentence} It was [P]!", verbalizer)
    examples = sentiment_task.split("dev")
    table = Evaluator(tiny_masked_lm).score([prompt], examples, sentiment_task)
    expected = [
        class_scores(tiny_masked_lm, verbalizer, e.fields["sentence"] + " It was", "!") for e in examples
    ]
    np.testing.assert_allclose(table.scores[0], expected, atol=ATOL, rtol=0)


def test_masked_answer_at_start(tiny_masked_lm: LanguageModel, sentiment_task: Task) -> None:
    prompt = Prompt.build("[P]: {sentence}", {"0": "bad", "1": "good"})
    examples = sentiment_task.split("test")[:4]
    table = Evaluator(tiny_masked_lm).score([prompt], examples, sentiment_task)
    expected = [
        class_scores(tiny_masked_lm, prompt.verbalizer, "", ": " + e.fields["sentence"]) for e in examples
    ]
    np.testing.assert_allclose(table.scores[0], expected, atol=ATOL, rtol=0)


# --- fact retrieval ------------------------------------------------------------------------------


def _fact_before(subject: str, line_start: bool) -> str:
    return f"{subject} is the capital of" + ("\n" if line_start else "")


def _fact_template(lm: LanguageModel, line_start: bool = False) -> str:
    return (
        "{sub_label} is the capital of" + ("\n[P]" if line_start else " [P]") + ("" if lm.is_causal else ".")
    )


def _answer_logits(lm: LanguageModel, subject: str, n_tokens: int, line_start: bool = False) -> torch.Tensor:
    """Full-vocabulary logits at the (first) answer position, from the rendered text."""
    before = _fact_before(subject, line_start)
    if lm.is_causal:
        ids = ids_of(lm, before, special=True)
        position = -1
    else:
        ids = ids_of(lm, before + lm.tokenizer.mask_token * n_tokens + ".", special=True)
        position = ids.index(lm.mask_id)
    with torch.no_grad():
        return lm.model(torch.tensor([ids])).logits[0, position]


def _gold_logits(
    lm: LanguageModel, subject: str, obj: str, line_start: bool = False
) -> tuple[torch.Tensor, list[int]]:
    """Full-vocabulary logits at the answer slot and the gold object's token ids."""
    gold = word_ids(lm, obj, at_line_start=line_start)
    return _answer_logits(lm, subject, len(gold), line_start), gold


def _with_argmax_objects(lm: LanguageModel, task: Task) -> Task:
    """The fact task (answer at a line start) with every other object replaced by the model's own top
    token where that token is a word by itself, so that both rank 1 and misses occur."""
    rows = []
    for i, example in enumerate(task.split("test")):
        top = int(_answer_logits(lm, example.fields["sub_label"], 1, line_start=True).argmax())
        word = lm.tokenizer.decode([top])
        if i % 2 == 0 and word.isprintable() and word.strip() == word != "" and ids_of(lm, word) == [top]:
            rows.append(Example(example.fields, word))
        else:
            rows.append(example)
    return task.with_splits(test=rows)


def test_fact_rank_is_one_iff_gold_first_token_is_argmax(any_lm: LanguageModel, fact_task: Task) -> None:
    task = _with_argmax_objects(any_lm, fact_task)
    examples = task.split("test")
    table = Evaluator(any_lm).score([Prompt.build(_fact_template(any_lm, line_start=True))], examples, task)
    assert table.rank is not None and table.rank.shape == (1, len(examples))
    ranks, argmax_hits = [], []
    for e, rank in zip(examples, table.rank[0], strict=True):
        logits, gold = _gold_logits(any_lm, e.fields["sub_label"], str(e.label), line_start=True)
        ranks.append(int((logits > logits[gold[0]]).sum()) + 1)
        argmax_hits.append(int(logits.argmax()) == gold[0])
        assert (rank == 1) == argmax_hits[-1]
    assert table.rank[0].tolist() == ranks
    assert 1 <= sum(argmax_hits) < len(examples), "the test needs both hits and misses"
    m = table.metrics()
    assert set(m) == {"p_at_1", "mrr", "gold_logprob", "n", "greedy_match"}
    assert m["p_at_1"] == pytest.approx(np.mean(argmax_hits))
    assert m["mrr"] == pytest.approx(np.mean(1 / np.array(ranks)))
    assert m["n"] == len(examples)
    assert table.greedy is not None and not np.any(table.greedy[0] & (table.rank[0] != 1))


def test_fact_gold_logprob_is_whole_object(causal_lm: LanguageModel, fact_task: Task) -> None:
    examples = fact_task.split("test")
    table = Evaluator(causal_lm).score([Prompt.build(_fact_template(causal_lm))], examples, fact_task)
    expected = []
    for e in examples:
        gold = word_ids(causal_lm, str(e.label))
        expected.append(
            teacher_forced(
                causal_lm, ids_of(causal_lm, f"{e.fields['sub_label']} is the capital of", special=True), gold
            )
        )
    assert any(len(word_ids(causal_lm, str(e.label))) > 1 for e in examples)
    np.testing.assert_allclose(table.gold_logprob[0], expected, atol=ATOL, rtol=0)
    assert table.metrics()["gold_logprob"] == pytest.approx(np.mean(expected), abs=ATOL)


def test_fact_candidate_ids_restrict_the_ranking(tiny_causal_lm: LanguageModel, fact_task: Task) -> None:
    examples = fact_task.split("test")
    golds = [word_ids(tiny_causal_lm, str(e.label))[0] for e in examples]
    excluded = golds[0]  # " Paris": one token, no other object starts with it
    assert golds.count(excluded) == 1
    candidates = sorted((set(golds) - {excluded}) | set(range(5, 60)))
    evaluator = Evaluator(tiny_causal_lm, candidate_ids=candidates)
    prompt = Prompt.build(_fact_template(tiny_causal_lm))
    table = evaluator.score([prompt], examples, fact_task)
    expected = []
    for e, gold in zip(examples, golds, strict=True):
        logits, _ = _gold_logits(tiny_causal_lm, e.fields["sub_label"], str(e.label))
        expected.append(int((logits[candidates] > logits[gold]).sum()) + 1 if gold in candidates else np.inf)
    assert table.rank[0].tolist() == expected
    assert expected[0] == np.inf and all(r < np.inf for r in expected[1:])
    full = Evaluator(tiny_causal_lm).score([prompt], examples, fact_task)
    assert np.all(table.rank[0][1:] <= full.rank[0][1:])
    assert np.any(table.rank[0][1:] < full.rank[0][1:])
    m = table.metrics()
    assert m["mrr"] == pytest.approx(np.mean([1 / r for r in expected]))
    assert m["p_at_1"] == pytest.approx(np.mean([r == 1 for r in expected]))


def test_fact_candidates_make_rank_one(tiny_causal_lm: LanguageModel, fact_task: Task) -> None:
    """With the gold token and one weaker rival as the only candidates, every rank is 1."""
    example = fact_task.split("test")[0]
    logits, gold = _gold_logits(tiny_causal_lm, example.fields["sub_label"], str(example.label))
    weaker = int(logits.argmin())
    prompt = Prompt.build(_fact_template(tiny_causal_lm))
    table = Evaluator(tiny_causal_lm, candidate_ids=[gold[0], weaker]).score([prompt], [example], fact_task)
    assert table.rank[0, 0] == 1
    assert table.metrics() | {"gold_logprob": 0.0} == {
        "p_at_1": 1.0,
        "mrr": 1.0,
        "gold_logprob": 0.0,
        "n": 1,
        "greedy_match": float(table.greedy[0, 0]),
    }


def test_fact_match_greedy_reports_greedy_as_p_at_1(tiny_gpt2_lm: LanguageModel, fact_task: Task) -> None:
    examples = fact_task.split("test")
    table = Evaluator(tiny_gpt2_lm, fact_match="greedy").score(
        [Prompt.build(_fact_template(tiny_gpt2_lm))], examples, fact_task
    )
    m = table.metrics()
    assert m["p_at_1"] == m["greedy_match"] == pytest.approx(np.mean(table.greedy[0]))
