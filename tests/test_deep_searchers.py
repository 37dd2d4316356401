"""The deep-prompt searchers (p-tuning-v2, prefix-tuning) on tiny models, and `evaluate-many` on the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from autoprompt_search import SEARCHERS, Budget
from autoprompt_search.cli import main
from autoprompt_search.errors import TemplateError
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.scoring import deep_prompt
from autoprompt_search.scoring.evaluator import Evaluator

VERBALIZER = {"0": "bad", "1": "good"}


@pytest.mark.parametrize("name", ["p-tuning-v2", "prefix-tuning"])
def test_deep_searcher_trains_and_saves_what_it_scored(any_lm, sentiment_task, tmp_path, name) -> None:
    template = "{sentence} It was[P]" if any_lm.is_causal else "{sentence} It was[P] ."
    searcher = SEARCHERS[name](templates=[template], verbalizers=[VERBALIZER], prefix_length=3, batch_size=4,
                               eval_every=2, lr=0.05, mlp_hidden=8, fallback=False, seed=0) if name == "prefix-tuning" \
        else SEARCHERS[name](templates=[template], verbalizers=[VERBALIZER], prefix_length=3, batch_size=4,
                             eval_every=2, lr=0.05, fallback=False, seed=0)
    result = searcher.search(sentiment_task, any_lm, budget=Budget(iterations=6), run_dir=tmp_path)
    losses = [r.scores["train_loss"] for r in result.history if "train_loss" in r.scores]
    assert len(losses) == 6
    shape = deep_prompt.kv_shape(any_lm)
    assert list(result.prompt.deep.shape) == [shape.layers, 2, shape.kv_heads, 3, shape.head_dim]
    loaded = Prompt.load(tmp_path)
    assert torch.equal(loaded.deep, result.prompt.deep.float())
    dev = Evaluator(any_lm).evaluate(loaded, sentiment_task.split("dev"), sentiment_task)
    assert dev == pytest.approx(result.dev_metrics)


def test_p_tuning_v2_lowers_the_training_loss(tiny_causal_lm, sentiment_task) -> None:
    searcher = SEARCHERS["p-tuning-v2"](templates=["{sentence} It was[P]"], verbalizers=[VERBALIZER],
                                        prefix_length=4, batch_size=12, eval_every=100, lr=0.1, seed=0)
    result = searcher.search(sentiment_task, tiny_causal_lm, budget=Budget(iterations=15))
    losses = [r.scores["train_loss"] for r in result.history]
    assert np.mean(losses[-3:]) < 0.7 * losses[0]  # the whole train split every step: loss must fall


def test_real_word_init_is_the_text_prefix(tiny_gpt2_lm, sentiment_task) -> None:
    from autoprompt_search.searchers.base import SearchContext

    searcher = SEARCHERS["prefix-tuning"](templates=["{sentence} It was[P]"], verbalizers=[VERBALIZER],
                                          prefix_length=3, init="text:the movie is", mlp_hidden=8)
    ctx = SearchContext(sentiment_task, tiny_gpt2_lm, Evaluator(tiny_gpt2_lm), np.random.default_rng(0),
                        sentiment_task.split("train"), sentiment_task.split("dev"), 0)
    searcher.start(ctx)  # residual: training starts exactly at the real words' keys and values
    ids = tiny_gpt2_lm.tokenize("the movie is")
    expected = deep_prompt.text_prefix(tiny_gpt2_lm, [ids[i % len(ids)] for i in range(3)])
    torch.testing.assert_close(searcher.param.materialise().deep.detach(), expected)


def test_a_prefix_that_trains_to_no_gain_falls_back_to_the_plain_template(tiny_causal_lm, sentiment_task) -> None:
    def searcher(fallback: bool):  # random keys and values in every layer: far worse than no prefix
        return SEARCHERS["p-tuning-v2"](templates=["{sentence} It was[P]"], verbalizers=[VERBALIZER], prefix_length=4,
                                        init="random", lr=1e-6, steps=2, eval_every=1, fallback=fallback, seed=0)

    result = searcher(True).search(sentiment_task, tiny_causal_lm, budget=Budget(iterations=2), progress=False)
    evidence = result.selection
    assert evidence["chosen"] == "plain" and evidence["plain"]["score"] > evidence["trained"]
    assert result.prompt.deep is None and result.prompt.render() == "{sentence} It was[P]"
    plain = Evaluator(tiny_causal_lm).evaluate(Prompt.build("{sentence} It was[P]", VERBALIZER),
                                               sentiment_task.split("dev"), sentiment_task)
    assert result.dev_score == pytest.approx(plain["class_logprob"])
    kept = searcher(False).search(sentiment_task, tiny_causal_lm, budget=Budget(iterations=2), progress=False)
    assert kept.prompt.deep is not None and kept.selection is None


def test_a_text_prefix_on_a_rotary_model_scores_as_the_text_written_before(tiny_tokenizer_bpe, sentiment_task) -> None:
    """Positions -n..-1 for the prefix's text: the deep prompt equals that text in front of the template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from autoprompt_search.models.language_model import LanguageModel

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, max_position_embeddings=256, vocab_size=len(tiny_tokenizer_bpe),
                         pad_token_id=tiny_tokenizer_bpe.pad_token_id)
    lm = LanguageModel.wrap(LlamaForCausalLM(config).float().eval(), tiny_tokenizer_bpe, name="llama-no-bos")
    assert lm.rotary_positions and not lm.prefix_ids
    text, template = "the movie is good.\n", "{sentence} It was[P]"
    deep = dataclasses.replace(Prompt.build(template, VERBALIZER), deep=deep_prompt.text_prefix(lm, lm.tokenize(text)))
    written = Prompt.build(text + template, VERBALIZER)
    examples = sentiment_task.split("dev")
    scores = Evaluator(lm).score([deep, written], examples, sentiment_task).scores
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-4)


def test_deep_searchers_refuse_soft_slots(tiny_causal_lm, sentiment_task) -> None:
    searcher = SEARCHERS["p-tuning-v2"](templates=["[V*2]{sentence} It was[P]"], verbalizers=[VERBALIZER])
    with pytest.raises(TemplateError, match="drop the \\[V\\] slots"):
        searcher.search(sentiment_task, tiny_causal_lm, budget=Budget(iterations=1))


def test_discover_p_tuning_v2_then_evaluate_many(tiny_model_dir, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["discover", "--model", str(tiny_model_dir), "--data", "sentiment", "--searcher", "p-tuning-v2",
                 "--config", '{"prefix_length": 2, "batch_size": 4, "eval_every": 1}', "--iterations", "2",
                 "--out", str(run)]) == 0
    assert Prompt.load(run).deep is not None
    capsys.readouterr()
    manual = json.dumps({"template": "{sentence} It was[P]", "verbalizer": {"negative": "bad", "positive": "good"},
                         "data": "sentiment", "limit": 5, "name": "manual"})
    fact = json.dumps({"template": "The capital of {sub_label} is[P]", "data": "capitals"})
    out = tmp_path / "many.json"
    assert main(["evaluate-many", "--model", str(tiny_model_dir), "--job", f"{run}=sentiment", "--job", manual,
                 "--job", fact, "--output-json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [job["name"] for job in result["jobs"]][1] == "manual" and result["jobs"][1]["n"] == 5
    assert "p_at_1" in result["jobs"][2] and result["examples"] == sum(job["n"] for job in result["jobs"])


@pytest.mark.parametrize(("job", "message"), [
    ("runs-only", "neither PROMPT=DATA nor a JSON object"),
    ("{not json", "not valid JSON"),
    ('{"data": "sentiment"}', "exactly one of 'prompt'"),
    ('{"template": "{sentence}[P]", "data": "sentiment", "colour": 1}', "unknown key"),
    ('{"template": "{sentence}[P]"}', "has no 'data'"),
    ('{"template": "{sentence}[P]", "data": "sentiment", "limit": 0}', "positive integer"),
])
def test_evaluate_many_bad_jobs_are_one_clear_line(tiny_model_dir, capsys, job, message) -> None:
    assert main(["evaluate-many", "--model", str(tiny_model_dir), "--job", job]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
