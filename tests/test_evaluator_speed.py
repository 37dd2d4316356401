"""The evaluator's shortcuts give the same answers as the plain path.

Prefix reuse, label-only heads, chunked scoring and successive halving are only worth having if
they change the arithmetic, not the result.
"""

from __future__ import annotations

import numpy as np
import pytest

from autoprompt_search.data.tasks import Task
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.scoring import metrics
from autoprompt_search.scoring.evaluator import Evaluator
from autoprompt_search.scoring.halving import rank

WORDS = {"0": ["bad", "terrible"], "1": ["good", "fantastic"]}  # "fantastic" is several tokens here


def trigger_candidates(lm: LanguageModel, n: int = 6) -> list[Prompt]:
    """AutoPrompt-style: the same template, candidates differing in the last trigger token only."""
    base = Prompt.build("Review: {sentence} [T*3]\nSentiment:[P]", WORDS)
    return [base.with_triggers((20, 30, 40 + i)) for i in range(n)]


def test_prefix_reuse_equals_full_forwards(causal_lm, sentiment_task: Task) -> None:
    prompts = trigger_candidates(causal_lm)
    examples = sentiment_task.split("test")
    reused = Evaluator(causal_lm).score(prompts, examples, sentiment_task)
    plain = Evaluator(causal_lm, reuse_prefix=False).score(prompts, examples, sentiment_task)
    np.testing.assert_allclose(reused.scores, plain.scores, atol=1e-4)
    assert np.ptp(plain.scores) > 0.05  # the scores differ across rows, so agreement means something


def test_prefix_reuse_with_soft_slots_and_tiny_batches(causal_lm, sentiment_task: Task) -> None:
    import torch

    torch.manual_seed(0)
    soft = torch.randn(2, causal_lm.hidden_size)
    prompts = [Prompt.build("{sentence} [T][V*2] so[P]", WORDS, soft=soft * (1 + i)).with_triggers((25 + i,))
               for i in range(3)]
    examples = sentiment_task.split("dev")
    reused = Evaluator(causal_lm, batch_tokens=40).score(prompts, examples, sentiment_task)
    plain = Evaluator(causal_lm, reuse_prefix=False).score(prompts, examples, sentiment_task)
    np.testing.assert_allclose(reused.scores, plain.scores, atol=1e-4)


def test_fact_ranks_survive_prefix_reuse(causal_lm, fact_task: Task) -> None:
    prompts = [Prompt.build("The capital city of {sub_label} [T] is[P]").with_triggers((30 + i,)) for i in range(4)]
    examples = fact_task.split("test")
    reused = Evaluator(causal_lm).score(prompts, examples, fact_task)
    plain = Evaluator(causal_lm, reuse_prefix=False).score(prompts, examples, fact_task)
    np.testing.assert_array_equal(reused.rank, plain.rank)
    np.testing.assert_allclose(reused.gold_logprob, plain.gold_logprob, atol=1e-4)


def test_label_only_head_is_a_softmax_over_label_words(tiny_causal_lm, sentiment_task: Task) -> None:
    prompts = [Prompt.build("Review: {sentence}\nSentiment:[P]", {"0": "bad", "1": "good"})]
    examples = sentiment_task.split("test")
    full = Evaluator(tiny_causal_lm).score(prompts, examples, sentiment_task).scores
    labels = Evaluator(tiny_causal_lm, normalize="labels").score(prompts, examples, sentiment_task).scores
    expected = full - np.logaddexp.reduce(full, axis=-1, keepdims=True)
    np.testing.assert_allclose(labels, expected, atol=1e-4)
    assert (labels.argmax(-1) == full.argmax(-1)).all()


def test_chunked_scoring_equals_one_pass(tiny_masked_lm, sentiment_task: Task) -> None:
    prompts = [Prompt.build("{sentence} It was[P].", WORDS), Prompt.build("Review: {sentence} [P]!", WORDS)]
    examples = sentiment_task.split("test")
    whole = Evaluator(tiny_masked_lm).score(prompts, examples, sentiment_task)
    chunked = Evaluator(tiny_masked_lm, chunk_pairs=6).score(prompts, examples, sentiment_task)
    np.testing.assert_allclose(chunked.scores, whole.scores, atol=1e-5)
    np.testing.assert_array_equal(chunked.gold, whole.gold)


def test_successive_halving_keeps_the_full_evaluation_winner(tiny_causal_lm, sentiment_task: Task) -> None:
    prompts = trigger_candidates(tiny_causal_lm, n=8)
    examples = list(sentiment_task.split("train")) + list(sentiment_task.split("dev"))
    evaluator = Evaluator(tiny_causal_lm)
    full = evaluator.score(prompts, examples, sentiment_task)
    full_scores = [metrics.selection_score(full.metrics(i), "classification") for i in range(len(prompts))]
    rows_before = evaluator.forward_rows
    ranking = rank(evaluator, prompts, examples, sentiment_task, keep=0.5, rungs=3)
    assert [r["examples"] for r in ranking.rungs] == [6, 12, 24]
    assert [len(r["candidates"]) for r in ranking.rungs] == [8, 4, 2]
    assert len(ranking.order) == 2
    finalists = [full_scores[i] for i in ranking.order]
    assert finalists == sorted(finalists, reverse=True)  # the last rung is the full evaluation
    assert evaluator.forward_rows - rows_before < len(prompts) * len(examples) * 2  # fewer rows than full


def test_rank_rejects_bad_arguments(tiny_causal_lm, sentiment_task: Task) -> None:
    with pytest.raises(ValueError, match="keep"):
        rank(Evaluator(tiny_causal_lm), trigger_candidates(tiny_causal_lm), sentiment_task.split("dev"),
                                       sentiment_task, keep=1.5)


def test_out_of_memory_backs_off_to_smaller_batches(tiny_causal_lm, sentiment_task: Task, monkeypatch) -> None:
    prompts = trigger_candidates(tiny_causal_lm, n=3)
    examples = sentiment_task.split("test")
    expected = Evaluator(tiny_causal_lm, reuse_prefix=False).score(prompts, examples, sentiment_task).scores
    real = tiny_causal_lm.hidden_states
    widths: list[int] = []

    def limited(mask, **kwargs):
        widths.append(mask.shape[0])
        if mask.shape[0] > 4:
            raise RuntimeError("CPU out of memory: tried to allocate 1 TiB")
        return real(mask, **kwargs)

    monkeypatch.setattr(tiny_causal_lm, "hidden_states", limited)
    got = Evaluator(tiny_causal_lm, reuse_prefix=False).score(prompts, examples, sentiment_task).scores
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert max(widths) > 4 and widths[-1] <= 4  # it tried a big batch, then finished with small ones


def test_other_runtime_errors_are_not_swallowed(tiny_causal_lm, sentiment_task: Task, monkeypatch) -> None:
    def broken(mask, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(tiny_causal_lm, "hidden_states", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        Evaluator(tiny_causal_lm, reuse_prefix=False).score(trigger_candidates(tiny_causal_lm, 2),
                                                             sentiment_task.split("dev"), sentiment_task)


def test_one_prompt_on_many_examples_runs_its_instruction_once(causal_lm, sentiment_task: Task, monkeypatch) -> None:
    """Test-set scoring: a single prompt's text before the input is a prefix shared by every example."""
    prompts = [Prompt.build("Is the sentiment of this movie review positive or negative?\nReview: {sentence}\n"
                            "Sentiment:[P]", {"0": "bad", "1": "good"})]
    examples = sentiment_task.split("test")
    plain = Evaluator(causal_lm, reuse_prefix=False).score(prompts, examples, sentiment_task)
    prefixes: list[tuple[int, int]] = []
    real = causal_lm.prefix_cache

    def counted(mask, ids, embeds=None):
        prefixes.append(tuple(mask.shape))
        return real(mask, ids, embeds)

    monkeypatch.setattr(causal_lm, "prefix_cache", counted)
    reused = Evaluator(causal_lm).score(prompts, examples, sentiment_task)
    np.testing.assert_allclose(reused.scores, plain.scores, atol=1e-4)
    assert len(prefixes) == 1 and prefixes[0][0] == 1  # one prefix row, for every example
    assert prefixes[0][1] >= len(causal_lm.tokenize("Is the sentiment of this movie review positive or negative?"))


def test_soft_vectors_before_the_input_join_the_shared_prefix(causal_lm, sentiment_task: Task, monkeypatch) -> None:
    import torch

    torch.manual_seed(1)
    prompts = [Prompt.build("[V*4]Review: {sentence}\nSentiment:[P]", WORDS, soft=torch.randn(4, causal_lm.hidden_size)
                            * (1 + i)) for i in range(2)]
    examples = sentiment_task.split("test")
    plain = Evaluator(causal_lm, reuse_prefix=False).score(prompts, examples, sentiment_task)
    widths: list[int] = []
    real = causal_lm.prefix_cache

    def counted(mask, ids, embeds=None):
        widths.extend([mask.shape[1]] * mask.shape[0])
        return real(mask, ids, embeds)

    monkeypatch.setattr(causal_lm, "prefix_cache", counted)
    reused = Evaluator(causal_lm).score(prompts, examples, sentiment_task)
    np.testing.assert_allclose(reused.scores, plain.scores, atol=1e-4)
    assert len(widths) == 2 and min(widths) >= 4  # each prompt's soft vectors and "Review:" run once
    assert np.ptp(plain.scores[0] - plain.scores[1]) > 0.01  # the two soft prompts really differ
