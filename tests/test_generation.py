"""Generation: reference likelihood, batched decoding of every prompt kind, BLEU / ROUGE-L."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from generation_fixtures import TEMPLATE, generation_task

from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.errors import DataError, TemplateError
from autoprompt_search.prompts.demonstrations import Demonstrations
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.scoring import deep_prompt
from autoprompt_search.scoring.evaluator import Evaluator
from autoprompt_search.scoring.generation import Decoding, stop_ids
from autoprompt_search.scoring.soft_forward import soft_forward
from autoprompt_search.scoring.text_metrics import (
    bleu_from_statistics,
    bleu_statistics,
    corpus_bleu,
    generation_metrics,
    rouge_l,
)


def _deep(lm, n: int = 3) -> torch.Tensor:
    shape = deep_prompt.kv_shape(lm)
    return torch.randn(shape.layers, 2, shape.kv_heads, n, shape.head_dim, generator=torch.Generator().manual_seed(1))


def _prompts(lm) -> dict[str, Prompt]:
    soft = torch.randn(3, lm.hidden_size, generator=torch.Generator().manual_seed(2))
    return {
        "discrete": Prompt.build(TEMPLATE),
        "soft": dataclasses.replace(Prompt.build("[V*2]Table: {mr}[V]\nText:[P]"), soft=soft),
        "deep": dataclasses.replace(Prompt.build(TEMPLATE), deep=_deep(lm)),
        "demos": dataclasses.replace(Prompt.build(TEMPLATE), demos=Demonstrations(k=2, per_class=False)),
    }


def _reference_logprob(lm, prompt: Prompt, example: Example, ref: str, task: Task) -> tuple[float, int]:
    """One reference scored alone: the prompt, the reference and EOS in one unbatched full forward."""
    evaluator = Evaluator(lm)
    prompt = evaluator.validated(prompt, task)
    demos = evaluator.context.demonstrations(prompt, example, task)
    encoded = evaluator.encoder.encode(prompt, example, demos)
    target = [*evaluator.encoder.word_ids(ref, encoded.text_before), lm.tokenizer.eos_token_id]
    ids = torch.tensor([[*encoded.before, *target]])
    embeds = lm.embed(ids)
    for pos, k in encoded.soft_before:
        embeds[0, pos] = prompt.soft[k]
    with torch.no_grad():
        hidden = deep_prompt.hidden_states(lm, torch.ones_like(ids), [prompt.deep], inputs_embeds=embeds)
        log_probs = torch.log_softmax(lm.vocab_logits(hidden[0]), dim=-1)
    start = len(encoded.before) - 1
    return float(sum(log_probs[start + j, t] for j, t in enumerate(target))), len(target)


@pytest.mark.parametrize("kind", ["discrete", "soft", "deep", "demos"])
def test_reference_likelihood_equals_one_reference_at_a_time(tiny_causal_lm, kind) -> None:
    task = generation_task()
    prompt = _prompts(tiny_causal_lm)[kind]
    examples = task.split("dev")
    table = Evaluator(tiny_causal_lm, batch_tokens=64).score([prompt], examples, task)
    for e, example in enumerate(examples):
        alone = [_reference_logprob(tiny_causal_lm, prompt, example, ref, task) for ref in example.references]
        assert table.gold_logprob[0, e] == pytest.approx(np.mean([lp for lp, _ in alone]), abs=1e-3)
        assert table.gold_tokens[0, e] == pytest.approx(np.mean([n for _, n in alone]))
    metrics = table.metrics(0)
    assert metrics["token_logprob"] == pytest.approx(table.gold_logprob[0].sum() / table.gold_tokens[0].sum())


def test_each_reference_is_one_row_with_no_context_only_row(tiny_causal_lm) -> None:
    """Every reference is several tokens (it ends with end-of-text): its own row reads them all."""
    task = generation_task()
    evaluator = Evaluator(tiny_causal_lm, reuse_prefix=False)
    examples = task.split("train")
    evaluator.score([Prompt.build(TEMPLATE)], examples, task)
    assert evaluator.forward_rows == sum(len(x.references) for x in examples)


def test_training_loss_is_the_per_token_reference_nll(tiny_causal_lm) -> None:
    task = generation_task()
    evaluator = Evaluator(tiny_causal_lm)
    prompt = evaluator.validated(_prompts(tiny_causal_lm)["soft"], task)
    examples = task.split("train")
    batch = soft_forward(evaluator.encoder, prompt, examples, task, prompt.soft)
    table = evaluator.score([prompt], examples, task)
    counts = [len(x.references) for x in examples]
    sums = [n_refs * lp for n_refs, lp in zip(counts, table.gold_logprob[0], strict=True)]
    tokens = [len(x.references) * n for x, n in zip(examples, table.gold_tokens[0], strict=True)]
    assert float(batch.loss()) == pytest.approx(-sum(sums) / sum(tokens), rel=1e-4)


@pytest.mark.parametrize("kind", ["discrete", "soft", "deep", "demos"])
@pytest.mark.parametrize("beams", [1, 3])
def test_batched_decoding_equals_one_at_a_time(tiny_causal_lm, kind, beams) -> None:
    task = generation_task()
    prompt = _prompts(tiny_causal_lm)[kind]
    examples = [*task.split("dev"), *task.split("test")]
    evaluator = Evaluator(tiny_causal_lm, decoding=Decoding(num_beams=beams, max_new_tokens=8, batch_size=4))
    batched = evaluator.generate(prompt, examples, task)
    assert batched == [evaluator.generate(prompt, [x], task)[0] for x in examples]
    assert all(text and "\n" not in text for text in batched)


@pytest.mark.parametrize("kind", ["discrete", "deep"])
def test_greedy_decoding_equals_a_plain_argmax_loop(tiny_causal_lm, kind) -> None:
    """generate with its KV cache (and a deep prompt as its starting cache) picks the tokens a loop of
    full forwards without any cache picks: same positions, same prefix, same stop rule."""
    lm, task = tiny_causal_lm, generation_task()
    evaluator = Evaluator(lm, decoding=Decoding(max_new_tokens=6))
    prompt = evaluator.validated(_prompts(lm)[kind], task)
    stops = set(stop_ids(lm, True))
    for example in task.split("dev"):
        ids = list(evaluator.encoder.encode(prompt, example).before)
        out: list[int] = []
        for step in range(6):
            seq = torch.tensor([ids + out])
            with torch.no_grad():
                hidden = deep_prompt.hidden_states(lm, torch.ones_like(seq), [prompt.deep], input_ids=seq)
                logits = lm.vocab_logits(hidden[0, -1:])[0]
            if step == 0:
                logits[list(stops)] = -torch.inf
            out.append(int(logits.argmax()))
            if out[-1] in stops:
                break
        expected = lm.tokenizer.decode(out, skip_special_tokens=True).split("\n")[0].strip()
        assert evaluator.generate(prompt, [example], task) == [expected]


def test_decode_adds_bleu_and_rouge(tiny_causal_lm) -> None:
    task = generation_task()
    evaluator = Evaluator(tiny_causal_lm, decoding=Decoding(max_new_tokens=5))
    metrics = evaluator.evaluate(Prompt.build(TEMPLATE), task.split("dev"), task, decode=True)
    assert {"bleu", "rouge_l", "token_logprob", "perplexity"} <= set(metrics)
    assert "bleu" not in evaluator.evaluate(Prompt.build(TEMPLATE), task.split("dev"), task)


def test_reference_longer_than_the_context_is_refused(tiny_causal_lm) -> None:
    long = " ".join(["the capital of France is Paris"] * 40)
    task = Task("long", "generation", {"test": [Example.generation({"mr": "name[x]"}, ["ok", long])]})
    with pytest.raises(DataError, match=r"name\[x\].*shorten that reference"):
        Evaluator(tiny_causal_lm).score([Prompt.build(TEMPLATE)], task.split("test"), task)


def test_masked_lm_cannot_generate(tiny_masked_lm) -> None:
    task = generation_task()
    with pytest.raises(TemplateError, match="causal LM"):
        Evaluator(tiny_masked_lm).evaluate(Prompt.build("{mr} [P]"), task.split("dev"), task)


def test_bleu_is_sacrebleus_multi_reference_corpus_bleu() -> None:
    import sacrebleu

    hyps = ["the cat sat on the mat", "a dog runs in the park today", "hello"]
    refs = [["the cat sat on a mat", "a cat is on the mat"], ["the dog runs in the park"], ["hello there", "hi"]]
    padded = [r + [r[0]] * (2 - len(r)) for r in refs]  # a repeated reference changes no n-gram maximum
    expected = sacrebleu.corpus_bleu(hyps, [list(s) for s in zip(*padded, strict=True)]).score
    assert corpus_bleu(hyps, refs) == pytest.approx(expected)
    assert corpus_bleu(["a b c d e"], [["a b c d e"]]) == pytest.approx(100.0)


def test_bleu_statistics_sum_to_the_corpus_bleu_and_resample() -> None:
    hyps = ["the cat sat on the mat", "a dog runs in the park today", "hello", "the the the"]
    refs = [["the cat sat on a mat", "a cat is on the mat"], ["the dog runs in the park"], ["hello there", "hi"],
            ["the cat", "a dog", "the end of it"]]
    rows = bleu_statistics(hyps, refs)
    assert bleu_from_statistics(rows) == pytest.approx(corpus_bleu(hyps, refs))
    assert bleu_from_statistics(bleu_statistics(["x y", "z"], [["a b"], ["c"]])) == pytest.approx(
        corpus_bleu(["x y", "z"], [["a b"], ["c"]]))  # no n-gram matches: the same smoothing
    picked = [0, 0, 2, 3]  # a bootstrap resample repeats inputs: it equals the corpus BLEU of the repeats
    assert bleu_from_statistics([rows[i] for i in picked]) == pytest.approx(
        corpus_bleu([hyps[i] for i in picked], [refs[i] for i in picked]))


def test_rouge_l_takes_the_best_reference() -> None:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    hyps = ["the cat sat on the mat", "dogs running"]
    refs = [["a cat on a mat", "the cat sat on the mat"], ["the dog runs"]]
    expected = (1.0 + scorer.score("the dog runs", "dogs running")["rougeL"].fmeasure) / 2 * 100
    assert rouge_l(hyps, refs) == pytest.approx(expected)
    with pytest.raises(DataError, match="reference"):
        generation_metrics(["x"], [[]])
