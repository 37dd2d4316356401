"""The Evaluator against independent references: full forward passes of the rendered prompt text.

Every reference below runs the *whole* model (``model(...).logits``) on one unpadded sequence
built from the rendered text (or from ids and embeddings spliced by hand), and reads log-softmax
values off it. The Evaluator instead packs many rows into padded batches, runs the encoder only
and applies the vocabulary head at answer positions only; the two must agree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.errors import DataError, TemplateError, VerbalizerError
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.prompts.verbalizer import Verbalizer
from autoprompt_search.scoring import metrics
from autoprompt_search.scoring.evaluator import Evaluator
from autoprompt_search.scoring.score_table import ScoreTable

ATOL = 1e-4
MULTI = "fantastic"  # not in the tokenizer's corpus: several tokens
SENTIMENT_WORDS = {"0": ["bad", "terrible"], "1": ["good", MULTI]}


@pytest.fixture(params=["tiny_causal_lm", "tiny_gpt2_lm", "tiny_masked_lm"])
def any_lm(request: pytest.FixtureRequest) -> LanguageModel:
    return request.getfixturevalue(request.param)


@pytest.fixture(params=["tiny_causal_lm", "tiny_gpt2_lm"])
def causal_lm(request: pytest.FixtureRequest) -> LanguageModel:
    return request.getfixturevalue(request.param)


# --- references ------------------------------------------------------------------------------------


def ids_of(lm: LanguageModel, text: str, *, special: bool = False) -> list[int]:
    return list(lm.tokenizer(text, add_special_tokens=special)["input_ids"])


def word_ids(lm: LanguageModel, word: str, *, at_line_start: bool = False) -> list[int]:
    ids = ids_of(lm, word if at_line_start else " " + word)
    assert ids and lm.tokenizer.unk_token_id not in ids
    return ids


@torch.no_grad()
def full_logprobs(
    lm: LanguageModel, ids: Sequence[int] | None = None, embeds: torch.Tensor | None = None
) -> torch.Tensor:
    """(T, V) log-probs of one sequence from the complete model, no padding, no attention mask."""
    if embeds is not None:
        logits = lm.model(inputs_embeds=embeds.unsqueeze(0)).logits[0]
    else:
        logits = lm.model(torch.tensor([list(ids or [])])).logits[0]
    return torch.log_softmax(logits.double(), dim=-1)


def teacher_forced(lm: LanguageModel, context: list[int], word: list[int], reduction: str = "sum") -> float:
    """Causal LM: log p(word | context), token by token, from one full forward of context + word."""
    lp = full_logprobs(lm, context + word[:-1])
    values = [lp[len(context) - 1 + j, t].item() for j, t in enumerate(word)]
    return float(np.sum(values) if reduction == "sum" else np.mean(values))


def masked_word(lm: LanguageModel, before: str, word: list[int], after: str, reduction: str = "sum") -> float:
    """Masked LM: one ``<mask>`` per word token at [P] in the rendered text, each scored on its own."""
    text = before + lm.tokenizer.mask_token * len(word) + after
    ids = ids_of(lm, text, special=True)
    positions = [i for i, t in enumerate(ids) if t == lm.mask_id]
    assert len(positions) == len(word)
    lp = full_logprobs(lm, ids)
    values = [lp[p, t].item() for p, t in zip(positions, word, strict=True)]
    return float(np.sum(values) if reduction == "sum" else np.mean(values))


def class_scores(lm: LanguageModel, verbalizer: Verbalizer, before: str, after: str = "") -> list[float]:
    """Reference class log-probs: log-sum-exp over each label's words, text rendered by hand."""
    line_start = before == "" or before.endswith("\n")
    out = []
    for words in verbalizer.words.values():
        scores = []
        for w in words:
            ids = word_ids(lm, w, at_line_start=line_start)
            if lm.is_causal:
                scores.append(teacher_forced(lm, ids_of(lm, before, special=True), ids, verbalizer.reduction))
            else:
                scores.append(masked_word(lm, before, ids, after, verbalizer.reduction))
        out.append(float(np.logaddexp.reduce(scores)))
    return out


def one_by_one(
    evaluator: Evaluator, prompts: Sequence[Prompt], examples: Sequence[Example], task: Task
) -> np.ndarray:
    rows = [[evaluator.score([p], [e], task).scores[0, 0] for e in examples] for p in prompts]
    return np.array(rows)


def prompts_for(lm: LanguageModel) -> list[Prompt]:
    if lm.is_causal:
        templates = ["Review: {sentence}\nSentiment:[P]", "{sentence} It was [P]", "{sentence}\n[P]"]
    else:
        templates = ["{sentence} It was [P].", "Review: {sentence}\nSentiment:[P]", "[P] : {sentence}"]
    verbalizers = [SENTIMENT_WORDS, {"0": "negative", "1": "positive"}, {"0": "bad", "1": ["good", "great"]}]
    return [Prompt.build(t, v) for t, v in zip(templates, verbalizers, strict=True)]


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


# --- metrics ---------------------------------------------------------------------------------------


def test_accuracy_and_macro_f1_by_hand() -> None:
    pred = np.array([0, 1, 1, 2, 0])
    gold = np.array([0, 1, 0, 2, 2])
    assert metrics.accuracy(pred, gold) == pytest.approx(3 / 5)
    # class 0: tp 1, fp 1, fn 1 -> 1/2; class 1: tp 1, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 2/3
    assert metrics.macro_f1(pred, gold, 3) == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert metrics.macro_f1(pred, gold, 5) == pytest.approx(
        (1 / 2 + 2 / 3 + 2 / 3) / 3
    )  # absent classes skipped
    assert metrics.macro_f1(np.array([0, 0, 0, 0]), np.array([0, 0, 1, 1]), 2) == pytest.approx(
        (2 / 3 + 0) / 2
    )
    assert np.isnan(metrics.accuracy(np.array([]), np.array([])))


def test_selection_score_breaks_accuracy_ties_by_the_named_logprob() -> None:
    vocab_better = {"accuracy": 0.75, "gold_logprob": -2.0, "class_logprob": -0.6}
    class_better = {"accuracy": 0.75, "gold_logprob": -3.0, "class_logprob": -0.4}
    def score(m: dict[str, float], tiebreak: str = "gold_logprob") -> float:
        return metrics.selection_score(m, "classification", tiebreak)

    assert score(vocab_better) > score(class_better)
    assert score(vocab_better, "class_logprob") < score(class_better, "class_logprob")
    assert score({**vocab_better, "accuracy": 0.8}, "class_logprob") > score(class_better, "class_logprob")


def test_rank_metrics_by_hand() -> None:
    rank = np.array([1, 2, 1, np.inf, 4])
    assert metrics.precision_at_1(rank) == pytest.approx(2 / 5)
    assert metrics.mean_reciprocal_rank(rank) == pytest.approx((1 + 1 / 2 + 1 + 0 + 1 / 4) / 5)
    out = metrics.fact_metrics(
        rank, np.array([-1.0, -2.0, -3.0, -4.0, -5.0]), np.array([True, False, False, False, False])
    )
    assert out == pytest.approx(
        {"p_at_1": 0.4, "mrr": 0.55, "gold_logprob": -3.0, "n": 5, "greedy_match": 0.2}
    )


def test_score_table_metrics() -> None:
    scores = np.log(
        np.array(
            [
                [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]],
                [[0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]],
            ]
        )
    )
    table = ScoreTable("classification", ("neg", "pos"), np.array([0, 1, 1, -1]), scores=scores)
    m0 = table.metrics(0)
    assert m0["accuracy"] == pytest.approx(2 / 3)
    # neg: tp 1, fp 1 -> 2/3; pos: tp 1, fn 1 -> 2/3
    assert m0["macro_f1"] == pytest.approx(2 / 3)
    assert m0["gold_logprob"] == pytest.approx(np.mean(np.log([0.9, 0.8, 0.4])))
    assert m0["class_logprob"] == pytest.approx(m0["gold_logprob"])  # rows already sum to 1 over the classes
    assert m0["n"] == 3
    halved = ScoreTable("classification", ("neg", "pos"), np.array([0, 1]), scores=scores[:, :2] + np.log(0.5))
    assert halved.metrics(0)["gold_logprob"] == pytest.approx(np.mean(np.log([0.45, 0.4])))
    assert halved.metrics(0)["class_logprob"] == pytest.approx(np.mean(np.log([0.9, 0.8])))
    m1 = table.metrics(1)
    assert m1["accuracy"] == pytest.approx(2 / 3)
    assert m1["macro_f1"] == pytest.approx((0 + 0.8) / 2)  # neg: fn 1 -> 0; pos: tp 2, fp 1 -> 4/5
    assert table.predictions(0) == ["neg", "pos", "neg", "pos"]
    fact = ScoreTable(
        "fact",
        (),
        np.zeros(2, dtype=int),
        rank=np.array([[1.0, 3.0]]),
        gold_logprob=np.array([[-1.0, -2.0]]),
        greedy=np.array([[False, False]]),
        fact_match="greedy",
    )
    assert fact.metrics() == pytest.approx(
        {"p_at_1": 0.0, "mrr": (1 + 1 / 3) / 2, "gold_logprob": -1.5, "n": 2, "greedy_match": 0.0}
    )
