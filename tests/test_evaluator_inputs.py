"""The Evaluator's prompt pieces and guards against the full-forward references: trigger and soft
slots spliced by hand, truncation of long inputs, and refusal of prompts and data it cannot score.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from evaluator_references import (
    ATOL,
    MULTI,
    SENTIMENT_WORDS,
    full_logprobs,
    ids_of,
    one_by_one,
    teacher_forced,
    word_ids,
)

from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.errors import DataError, TemplateError, VerbalizerError
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.prompts.verbalizer import Verbalizer
from autoprompt_search.scoring.evaluator import Evaluator

# --- trigger and soft slots -----------------------------------------------------------------------


def test_trigger_ids_equal_reference_built_from_ids(causal_lm: LanguageModel, sentiment_task: Task) -> None:
    triggers = (300, 7, 411)
    verbalizer = Verbalizer.parse({"0": "negative", "1": ["positive", MULTI]})
    prompt = Prompt.build("{sentence}[T*2] Sentiment:[T][P]", verbalizer, trigger_ids=triggers)
    examples = sentiment_task.split("dev")[:6]
    table = Evaluator(causal_lm).score([prompt], examples, sentiment_task)
    for e, scores in zip(examples, table.scores[0], strict=True):
        sentence = ids_of(causal_lm, e.fields["sentence"], special=True)
        context = [*sentence, 300, 7, *ids_of(causal_lm, " Sentiment:"), 411]
        expected = [
            float(
                np.logaddexp.reduce(
                    [teacher_forced(causal_lm, context, word_ids(causal_lm, w)) for w in words]
                )
            )
            for words in verbalizer.words.values()
        ]
        np.testing.assert_allclose(scores, expected, atol=ATOL, rtol=0)
    other = Evaluator(causal_lm).score([prompt.with_triggers((8, 9, 10))], examples, sentiment_task)
    assert np.abs(other.scores - table.scores).max() > 0.05


def _soft(n: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed)) * 0.5


def _spliced(lm: LanguageModel, pieces: list[list[int] | torch.Tensor]) -> torch.Tensor:
    """(T, H) input embeddings: id pieces embedded, tensor pieces (soft vectors) used as they are."""
    embed = lm.model.get_input_embeddings()
    with torch.no_grad():
        parts = [
            p if isinstance(p, torch.Tensor) else embed(torch.tensor(p, dtype=torch.long)) for p in pieces
        ]
    return torch.cat([p.reshape(-1, lm.hidden_size) for p in parts])


def test_soft_vectors_causal_equal_inputs_embeds_reference(
    causal_lm: LanguageModel, sentiment_task: Task
) -> None:
    soft = _soft(3, causal_lm.hidden_size, 1)
    verbalizer = Verbalizer.parse({"0": "negative", "1": MULTI})
    prompt = Prompt.build("Review: {sentence}[V*2] Sentiment:[V][P]", verbalizer, soft=soft)
    examples = sentiment_task.split("dev")[:6]
    table = Evaluator(causal_lm).score([prompt], examples, sentiment_task)
    for e, scores in zip(examples, table.scores[0], strict=True):
        context = [
            ids_of(causal_lm, "Review: " + e.fields["sentence"], special=True),
            soft[:2],
            ids_of(causal_lm, " Sentiment:"),
            soft[2:],
        ]
        expected = []
        for words in verbalizer.words.values():
            word = word_ids(causal_lm, words[0])
            lp = full_logprobs(causal_lm, embeds=_spliced(causal_lm, [*context, word[:-1]]))
            n = len(_spliced(causal_lm, context))
            expected.append(sum(lp[n - 1 + j, t].item() for j, t in enumerate(word)))
        np.testing.assert_allclose(scores, expected, atol=ATOL, rtol=0)
    other = Evaluator(causal_lm).score(
        [Prompt.build(prompt.template, verbalizer, soft=_soft(3, causal_lm.hidden_size, 2))],
        examples,
        sentiment_task,
    )
    assert np.abs(other.scores - table.scores).max() > 0.05


def test_soft_vectors_masked_before_and_after_answer(
    tiny_masked_lm: LanguageModel, sentiment_task: Task
) -> None:
    lm = tiny_masked_lm
    soft = _soft(3, lm.hidden_size, 3)
    verbalizer = Verbalizer.parse({"0": "negative", "1": MULTI})
    prompt = Prompt.build("{sentence}[V] It was [P].[V*2]", verbalizer, soft=soft)
    examples = sentiment_task.split("test")[:6]
    table = Evaluator(lm).score([prompt], examples, sentiment_task)
    cls, sep = lm.prefix_ids, lm.suffix_ids
    for e, scores in zip(examples, table.scores[0], strict=True):
        expected = []
        for words in verbalizer.words.values():
            word = word_ids(lm, words[0])
            head = [[*cls, *ids_of(lm, e.fields["sentence"])], soft[:1], ids_of(lm, " It was")]
            start = len(_spliced(lm, head))
            embeds = _spliced(lm, [*head, [lm.mask_id] * len(word), ids_of(lm, "."), soft[1:], list(sep)])
            lp = full_logprobs(lm, embeds=embeds)
            expected.append(sum(lp[start + j, t].item() for j, t in enumerate(word)))
        np.testing.assert_allclose(scores, expected, atol=ATOL, rtol=0)


def test_soft_and_trigger_prompts_batch_with_plain_ones(any_lm: LanguageModel, sentiment_task: Task) -> None:
    after = "" if any_lm.is_causal else "."
    prompts = [
        Prompt.build(
            "{sentence}[V*2] It was [P]" + after, SENTIMENT_WORDS, soft=_soft(2, any_lm.hidden_size, 4)
        ),
        Prompt.build("[T]{sentence}[T] It was [P]" + after, SENTIMENT_WORDS, trigger_ids=(100, 200)),
        Prompt.build(
            "[V]{sentence} It was [P]" + after, SENTIMENT_WORDS, soft=_soft(1, any_lm.hidden_size, 5)
        ),
    ]
    examples = sentiment_task.split("dev")[:5]
    table = Evaluator(any_lm, batch_tokens=64).score(prompts, examples, sentiment_task)
    np.testing.assert_allclose(
        table.scores, one_by_one(Evaluator(any_lm), prompts, examples, sentiment_task), atol=ATOL, rtol=0
    )


# --- truncation ------------------------------------------------------------------------------------


def test_long_inputs_are_truncated_keeping_the_answer_slot(
    any_lm: LanguageModel, sentiment_task: Task, caplog: pytest.LogCaptureFixture
) -> None:
    long = " ".join(["a great movie with good acting and a good story"] * 60)
    assert len(ids_of(any_lm, long)) > 3 * any_lm.max_length
    examples = [
        Example({"sentence": long}, "1"),
        Example({"sentence": long + " bad"}, "0"),
        *sentiment_task.split("dev")[:2],
    ]
    after = "" if any_lm.is_causal else "."
    prompt = Prompt.build("Review: {sentence}\nSentiment: [P]" + after, {"0": "negative", "1": MULTI})
    evaluator = Evaluator(any_lm)
    with caplog.at_level(logging.WARNING, logger="autoprompt_search"):
        table = evaluator.score([prompt], examples, sentiment_task)
        evaluator.score([prompt], examples[:1], sentiment_task)
    warnings = [r for r in caplog.records if "truncating" in r.getMessage()]
    assert len(warnings) == 1
    assert np.all(np.isfinite(table.scores)) and np.all(table.scores < 0)
    # short examples in the same call are untouched
    short = Evaluator(any_lm).score([prompt], examples[2:], sentiment_task)
    np.testing.assert_allclose(table.scores[0, 2:], short.scores[0], atol=ATOL, rtol=0)
    for example in examples[:2]:
        encoded = evaluator.encoder.encode(prompt, example)
        total = len(encoded.before) + len(encoded.after)
        assert any_lm.max_length // 2 < total <= any_lm.max_length - 16
        assert list(encoded.before[: len(any_lm.prefix_ids) + 2]) == [
            *any_lm.prefix_ids,
            *ids_of(any_lm, "Review:"),
        ]
        tail = ids_of(any_lm, "\nSentiment:")
        assert list(encoded.before[-len(tail) :]) == tail
        assert list(encoded.after) == ids_of(any_lm, after) + list(any_lm.suffix_ids)
    # the truncated example scores like its truncated text rendered by hand
    kept = evaluator.encoder.encode(prompt, examples[0]).before
    if any_lm.is_causal:
        expected = [teacher_forced(any_lm, list(kept), word_ids(any_lm, w)) for w in ("negative", MULTI)]
        np.testing.assert_allclose(table.scores[0, 0], expected, atol=ATOL, rtol=0)


def test_prompt_alone_too_long_is_a_template_error(tiny_gpt2_lm: LanguageModel, sentiment_task: Task) -> None:
    prompt = Prompt.build("{sentence}[T*200] It was[P]", {"0": "bad", "1": "good"}, trigger_ids=(5,) * 200)
    with pytest.raises(TemplateError, match="shorten the template"):
        Evaluator(tiny_gpt2_lm).score([prompt], sentiment_task.split("dev")[:1], sentiment_task)


# --- validation ------------------------------------------------------------------------------------


def test_causal_template_with_text_after_answer(causal_lm: LanguageModel, sentiment_task: Task) -> None:
    prompt = Prompt.build("{sentence} It was [P].", {"0": "bad", "1": "good"})
    with pytest.raises(TemplateError, match="after \\[P\\]"):
        Evaluator(causal_lm).score([prompt], sentiment_task.split("dev"), sentiment_task)
    trailing_space = Prompt.build("{sentence} It was [P] \n", {"0": "bad", "1": "good"})
    assert (
        Evaluator(causal_lm)
        .score([trailing_space], sentiment_task.split("dev")[:2], sentiment_task)
        .scores.shape
    )


@pytest.mark.parametrize(
    ("prompt", "error", "needle"),
    [
        (Prompt.build("{sentence} It was [P]"), TemplateError, "give a verbalizer"),
        (Prompt.build("{sentence} It was [P]", {"1": "good"}), VerbalizerError, "not in the verbalizer"),
        (
            Prompt.build("{sentence} It was [P]", {"0": "bad", "1": "good", "2": "ok"}),
            VerbalizerError,
            "do not occur in the data",
        ),
        (
            Prompt.build("{sentence}[T*3] It was [P]", {"0": "bad", "1": "good"}),
            TemplateError,
            "3 \\[T\\] slot\\(s\\)",
        ),
        (
            Prompt.build("{sentence}[T*3] It was [P]", {"0": "bad", "1": "good"}, trigger_ids=(1, 2)),
            TemplateError,
            "2 trigger token",
        ),
        (Prompt.build("{sentence}[V*2] It was [P]", {"0": "bad", "1": "good"}), TemplateError, "soft"),
        (
            Prompt.build("{sentence}[V*2] It was [P]", {"0": "bad", "1": "good"}, soft=torch.zeros(3, 32)),
            TemplateError,
            "soft",
        ),
        (Prompt.build("{text} It was [P]", {"0": "bad", "1": "good"}), TemplateError, "unknown field"),
    ],
)
def test_invalid_prompts_are_refused_before_scoring(
    any_lm: LanguageModel, sentiment_task: Task, prompt: Prompt, error: type[Exception], needle: str
) -> None:
    evaluator = Evaluator(any_lm)
    with pytest.raises(error, match=needle):
        evaluator.score([prompt], sentiment_task.split("dev"), sentiment_task)
    assert evaluator.forward_rows == 0


def test_data_errors(tiny_gpt2_lm: LanguageModel, sentiment_task: Task) -> None:
    prompt = Prompt.build("{sentence} It was [P]", {"0": "bad", "1": "good"})
    evaluator = Evaluator(tiny_gpt2_lm)
    with pytest.raises(DataError, match="no examples"):
        evaluator.score([prompt], [], sentiment_task)
    with pytest.raises(DataError, match=r"labels \['2'\] are not among"):
        evaluator.score([prompt], [Example({"sentence": "x"}, "2")], sentiment_task)
    with pytest.raises(DataError, match="lacks the field 'sentence'"):
        evaluator.score([prompt], [Example({"text": "x"}, "1")], sentiment_task)
    unlabelled = evaluator.score(
        [prompt], [Example({"sentence": "x"}), Example({"sentence": "y"}, "1")], sentiment_task
    )
    assert unlabelled.gold.tolist() == [-1, 1]
    assert unlabelled.metrics()["n"] == 1


def test_evaluate_and_predictions(tiny_gpt2_lm: LanguageModel, sentiment_task: Task) -> None:
    prompt = Prompt.build("{sentence} It was [P]", {"0": "bad", "1": "good"})
    examples = sentiment_task.split("dev")
    evaluator = Evaluator(tiny_gpt2_lm)
    table = evaluator.score([prompt], examples, sentiment_task)
    predicted = table.predictions()
    assert predicted == [("0", "1")[int(np.argmax(s))] for s in table.scores[0]]
    expected_accuracy = np.mean([p == e.label for p, e in zip(predicted, examples, strict=True)])
    assert evaluator.evaluate(prompt, examples, sentiment_task)["accuracy"] == pytest.approx(
        expected_accuracy
    )
