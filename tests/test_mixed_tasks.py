"""Deep prompts in the Evaluator, and mixed-task batches (several tasks and prompt kinds at once).

References: a deep prompt's scores computed by hand (one unpadded row through
:func:`deep_prompt.hidden_states`, full log-softmax at the answer position); a mixed batch against
each job scored alone.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from autoprompt_search.errors import DataError, PromptFileError
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.scoring import deep_prompt
from autoprompt_search.scoring.evaluator import Evaluator, Job
from autoprompt_search.scoring.rows import pad_rows

ATOL = 1e-4
VERBALIZER = {"0": "bad", "1": "good"}


def random_deep(lm: LanguageModel, n: int, seed: int) -> torch.Tensor:
    shape = deep_prompt.kv_shape(lm)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape.layers, 2, shape.kv_heads, n, shape.head_dim, generator=generator)


def answer_template(lm: LanguageModel, body: str) -> str:
    return body if lm.is_causal else body + " ."


@torch.no_grad()
def reference_class_scores(lm: LanguageModel, prompt: Prompt, examples) -> np.ndarray:
    """(E, 2) scores of one-token label words, one example at a time, by hand."""
    evaluator = Evaluator(lm)
    prompt = evaluator.encoder.validate(prompt, _task(examples))
    out = []
    for example in examples:
        enc = evaluator.encoder.encode(prompt, example)
        ids = enc.before if lm.is_causal else (*enc.before, lm.mask_id, *enc.after)
        position = len(enc.before) - 1 if lm.is_causal else len(enc.before)
        padded, mask = pad_rows(lm, [ids])
        hidden = deep_prompt.hidden_states(lm, mask, [prompt.deep], input_ids=padded)
        log_probs = lm.vocab_logits(hidden[0, position : position + 1]).log_softmax(-1)[0]
        words = evaluator.encoder.label_word_ids(prompt, enc)
        out.append([float(log_probs[w[0][0]]) for w in words])
    return np.array(out)


def _task(examples):
    from autoprompt_search.data.tasks import Task

    return Task("t", "classification", {"dev": list(examples)}, labels=("0", "1"), fields=("sentence",))


def test_evaluator_scores_deep_prompt_like_hand_reference(any_lm: LanguageModel, sentiment_task) -> None:
    lm = any_lm
    prompt = Prompt.build(answer_template(lm, "{sentence} It was[P]"), VERBALIZER, deep=random_deep(lm, 4, 0))
    examples = sentiment_task.split("dev")[:6]
    table = Evaluator(lm).score([prompt], examples, sentiment_task)
    np.testing.assert_allclose(table.scores[0], reference_class_scores(lm, prompt, examples), atol=ATOL)
    plain = Evaluator(lm).score([dataclasses.replace(prompt, deep=None)], examples, sentiment_task)
    assert np.abs(plain.scores - table.scores).max() > 100 * ATOL  # the deep prompt matters


@pytest.mark.parametrize("template", ["Review: {sentence} and more text here It was[P]",
                                      "Is this movie review positive or negative? Review: {sentence} It was[P]"])
def test_deep_candidates_with_prefix_reuse_equal_without(causal_lm, sentiment_task, template, monkeypatch) -> None:
    """Rows behind one deep prompt share its instruction's prefix, run behind the deep prompt."""
    base = Prompt.build(template, VERBALIZER)
    prompts = [base, dataclasses.replace(base, deep=random_deep(causal_lm, 3, 1)),
               dataclasses.replace(base, deep=random_deep(causal_lm, 5, 2))]
    examples = sentiment_task.split("dev")
    plain = Evaluator(causal_lm, reuse_prefix=False).score(prompts, examples, sentiment_task)
    behind: list[int] = []
    real = causal_lm.prefix_cache

    def counted(mask, ids, embeds=None, **kw):
        if kw.get("past_key_values") is not None:
            behind.append(mask.shape[0])
        return real(mask, ids, embeds, **kw)

    monkeypatch.setattr(causal_lm, "prefix_cache", counted)
    reused = Evaluator(causal_lm, reuse_prefix=True).score(prompts, examples, sentiment_task)
    np.testing.assert_allclose(reused.scores, plain.scores, atol=ATOL)
    assert np.abs(plain.scores[1] - plain.scores[2]).max() > 100 * ATOL  # the deep prompts matter
    if template.startswith("Is this"):  # a long shared instruction: each deep prompt's rows share it
        assert sum(behind) >= 2


def test_deep_prompt_saved_and_loaded_scores_the_same(tmp_path, tiny_gpt2_lm, sentiment_task) -> None:
    prompt = Prompt.build("{sentence} It was[P]", VERBALIZER, deep=random_deep(tiny_gpt2_lm, 3, 0))
    prompt.save(tmp_path)
    loaded = Prompt.load(tmp_path)
    assert torch.equal(loaded.deep, prompt.deep)
    examples = sentiment_task.split("dev")
    evaluator = Evaluator(tiny_gpt2_lm)
    assert evaluator.evaluate(loaded, examples, sentiment_task) == evaluator.evaluate(prompt, examples, sentiment_task)


def test_deep_prompt_for_another_model_is_refused(tiny_causal_lm, tiny_gpt2_lm, sentiment_task) -> None:
    prompt = Prompt.build("{sentence} It was[P]", VERBALIZER, deep=random_deep(tiny_causal_lm, 3, 0))
    with pytest.raises(PromptFileError, match="kv heads"):
        Evaluator(tiny_gpt2_lm).evaluate(prompt, sentiment_task.split("dev"), sentiment_task)


def _mixed_jobs(lm: LanguageModel, sentiment_task, fact_task) -> list[Job]:
    """Discrete, shallow soft, deep and plain prompts on a classification and a fact task."""
    trigger_ids = tuple(lm.tokenize(" the movie"))[:2]
    hidden = lm.hidden_size
    soft = torch.randn(2, hidden, generator=torch.Generator().manual_seed(5))
    cls = sentiment_task.split("dev")
    facts = fact_task.split("test")
    return [
        Job(Prompt.build(answer_template(lm, "{sentence} [T*2] It was[P]"), VERBALIZER,
                         trigger_ids=trigger_ids), cls, sentiment_task),
        Job(Prompt.build(answer_template(lm, "[V*2]{sentence} It was[P]"), VERBALIZER, soft=soft), cls[:7],
            sentiment_task),
        Job(Prompt.build(answer_template(lm, "{sentence} It was[P]"), VERBALIZER, deep=random_deep(lm, 3, 7)),
            cls[3:], sentiment_task),
        Job(Prompt.build(answer_template(lm, "The capital of {sub_label} is[P]")), facts, fact_task),
        Job(Prompt.build(answer_template(lm, "The capital of {sub_label} is[P]"), deep=random_deep(lm, 5, 8)),
            facts, fact_task),
    ]


@pytest.mark.parametrize("normalize", ["vocab", "labels"])
def test_mixed_batch_equals_each_job_alone(any_lm, sentiment_task, fact_task, normalize) -> None:
    jobs = _mixed_jobs(any_lm, sentiment_task, fact_task)
    evaluator = Evaluator(any_lm, normalize=normalize)
    together = evaluator.score_many(jobs)
    for job, table in zip(jobs, together, strict=True):
        alone = Evaluator(any_lm, normalize=normalize).score([job.prompts], job.examples, job.task)
        for name in ("scores", "rank", "gold_logprob", "greedy"):
            if getattr(alone, name) is not None:
                np.testing.assert_allclose(getattr(table, name), getattr(alone, name), atol=ATOL, err_msg=name)
    metrics = evaluator.evaluate_many(jobs)
    assert [m["n"] for m in metrics] == [len(j.examples) for j in jobs]


def test_mixed_batch_is_one_pass_per_chunk(tiny_causal_lm, sentiment_task, fact_task, monkeypatch) -> None:
    from autoprompt_search.scoring import evaluator as evaluator_module

    calls = []
    real = evaluator_module.run_queries
    monkeypatch.setattr(evaluator_module, "run_queries", lambda *a, **k: calls.append(1) or real(*a, **k))
    Evaluator(tiny_causal_lm).score_many(_mixed_jobs(tiny_causal_lm, sentiment_task, fact_task))
    assert len(calls) == 1
    calls.clear()
    jobs = _mixed_jobs(tiny_causal_lm, sentiment_task, fact_task)
    small = Evaluator(tiny_causal_lm, chunk_pairs=10).score_many(jobs)  # chunks split jobs; results join
    assert len(calls) > 1
    whole = Evaluator(tiny_causal_lm).score_many(jobs)
    for a, b in zip(small, whole, strict=True):
        np.testing.assert_allclose(a.scores if a.scores is not None else a.rank,
                                   b.scores if b.scores is not None else b.rank, atol=ATOL)


def test_mixed_batch_rejects_empty_jobs(tiny_causal_lm, sentiment_task) -> None:
    prompt = Prompt.build("{sentence} It was[P]", VERBALIZER)
    with pytest.raises(DataError, match="no examples"):
        Evaluator(tiny_causal_lm).evaluate_many([(prompt, [], sentiment_task)])
    with pytest.raises(DataError, match="no prompts"):
        Evaluator(tiny_causal_lm).score_many([([], sentiment_task.split("dev"), sentiment_task)])


def test_batches_do_not_pad_short_rows_to_long_ones() -> None:
    from autoprompt_search.scoring.batching import _bucket

    lengths = [40, 30, 21, 19, 5]
    assert _bucket([0, 1, 2, 3, 4], lengths) == [0, 1, 2]  # 19 < 40 / 2 starts the next batch
    assert _bucket([3, 4], lengths) == [3]
    assert _bucket([4], lengths) == [4]
