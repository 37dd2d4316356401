"""Soft-prompt training: what the contract suite does not check (inits, early stopping, data order,
masked LMs, bf16 autocast, bad input)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from autoprompt_search import Budget, Evaluator, Prompt
from autoprompt_search.cli import main
from autoprompt_search.data.loaders import load_task
from autoprompt_search.errors import AutopromptError, BudgetError, PromptFileError, TemplateError
from autoprompt_search.scoring.selection import selection_score
from autoprompt_search.searchers import PromptTuningSearcher, PTuningSearcher, SearchContext
from autoprompt_search.searchers.soft.initialization import initial_vectors

VERBALIZER = {"0": "bad", "1": "good"}


def _ctx(lm, task) -> SearchContext:
    return SearchContext(task, lm, Evaluator(lm), np.random.default_rng(0), task.split("train"), task.split("dev"), 0)


def _prompt(ctx) -> Prompt:
    return ctx.evaluator.encoder.validate(
        Prompt.build("[V*4]{sentence} It was[P]", VERBALIZER, soft=torch.zeros(4, ctx.model.hidden_size)), ctx.task)


def test_training_lowers_the_training_loss(tiny_causal_lm, sentiment_task) -> None:
    searcher = PromptTuningSearcher(templates=["[V*4]{sentence} It was[P]"], verbalizers=[VERBALIZER], lr=0.05,
                                    batch_size=12, steps=15, eval_every=5, seed=0)
    result = searcher.search(sentiment_task, tiny_causal_lm, progress=False)
    losses = [r.scores["train_loss"] for r in result.history]
    assert len(losses) == 15 and np.mean(losses[-3:]) < losses[0] - 0.05
    assert result.prompt.soft.shape == (4, tiny_causal_lm.hidden_size)
    assert result.dev_score == max([result.history[0].best_score, *[r.scores.get("dev", -1) for r in result.history]])


def test_random_init_is_scaled_to_the_embedding_norm(tiny_causal_lm, sentiment_task) -> None:
    ctx = _ctx(tiny_causal_lm, sentiment_task)
    vectors = initial_vectors(ctx, _prompt(ctx), 4, "random", seed=0)
    mean_norm = tiny_causal_lm.model.get_input_embeddings().weight.norm(dim=1).mean()
    assert torch.allclose(vectors.norm(dim=1), mean_norm.expand(4), rtol=1e-5)


def test_vocab_labels_and_text_inits_are_token_embeddings(tiny_causal_lm, sentiment_task) -> None:
    ctx = _ctx(tiny_causal_lm, sentiment_task)
    table = tiny_causal_lm.model.get_input_embeddings().weight.detach()
    seen = {i for e in ctx.train for i in tiny_causal_lm.tokenize(e.fields["sentence"])}
    rows = lambda v: [int((table - x).norm(dim=1).argmin()) for x in v]  # noqa: E731
    vocab = rows(initial_vectors(ctx, _prompt(ctx), 4, "vocab", seed=0))
    assert set(vocab) <= seen and len(set(vocab)) == 4
    labels = rows(initial_vectors(ctx, _prompt(ctx), 4, "labels", seed=0))
    assert labels == [tiny_causal_lm.tokenize(" bad")[0], tiny_causal_lm.tokenize(" good")[0]] * 2
    ids = tiny_causal_lm.tokenize("great movie")
    text = rows(initial_vectors(ctx, _prompt(ctx), 5, "text:great movie", seed=0))
    assert text == [ids[i % len(ids)] for i in range(5)]
    with pytest.raises(AutopromptError, match="unknown init"):
        initial_vectors(ctx, _prompt(ctx), 4, "zeros", seed=0)


def test_prompt_init_starts_from_a_saved_prompt(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    ctx = _ctx(tiny_causal_lm, sentiment_task)
    saved = Prompt.build("[V*4]{sentence} It was[P]", VERBALIZER, soft=torch.randn(4, tiny_causal_lm.hidden_size))
    saved.save(tmp_path)
    assert torch.equal(initial_vectors(ctx, _prompt(ctx), 4, f"prompt:{tmp_path}", seed=0), saved.soft)
    with pytest.raises(PromptFileError, match="as many \\[V\\] slots"):
        initial_vectors(ctx, _prompt(ctx), 3, f"prompt:{tmp_path}", seed=0)


def test_p_tuning_starts_at_its_init_and_trains_the_encoder(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    searcher = PTuningSearcher(templates=["{sentence}[V*3] It was[P]"], verbalizers=[VERBALIZER], init="vocab",
                               encoder_hidden=16, steps=2, eval_every=1, seed=0)
    result = searcher.search(sentiment_task, tiny_causal_lm, run_dir=tmp_path, progress=False)
    ctx = _ctx(tiny_causal_lm, sentiment_task)
    init = initial_vectors(ctx, _prompt(ctx), 3, "vocab", seed=0)
    searcher._prepare(ctx)
    assert torch.equal(searcher.param.materialise().soft.detach(), init)  # residual encoder: starts at the init
    assert result.history[-1].scores["train_loss"] != result.history[0].scores["train_loss"]
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "checkpoint" / "state.safetensors"))
    assert any(k.startswith("param.encoder.lstm") for k in state)  # the encoder is kept to resume


def test_early_stopping_after_patience_evaluations(tiny_causal_lm, sentiment_task) -> None:
    def steps_run(patience: int | None) -> int:
        searcher = PromptTuningSearcher(templates=["[V*2]{sentence} It was[P]"], verbalizers=[VERBALIZER], lr=1e-7,
                                        eval_every=1, patience=patience, steps=30, seed=0)
        return len(searcher.search(sentiment_task, tiny_causal_lm, progress=False).history)

    assert steps_run(2) < 30  # a vanishing lr never beats the init: stops after 2 evaluations (+ ties)
    assert steps_run(None) < 30  # left out: the cpu preset's patience (3)
    assert steps_run(0) == 30  # 0: no early stopping


def test_patience_must_not_be_negative() -> None:
    with pytest.raises(BudgetError, match="patience >= 0"):
        PromptTuningSearcher(patience=-1)


def test_the_data_order_visits_every_example_once_per_epoch(tiny_causal_lm, sentiment_task) -> None:
    searcher = PromptTuningSearcher(templates=["[V*2]{sentence} It was[P]"], verbalizers=[VERBALIZER],
                                    batch_size=5, seed=3)
    ctx = _ctx(tiny_causal_lm, sentiment_task)
    searcher._prepare(ctx)
    seen = [e.fields["sentence"] for _ in range(12) for _, e in searcher._next_batch(ctx)]  # 60 = 5 epochs of 12
    for epoch in range(5):
        assert sorted(seen[12 * epoch : 12 * epoch + 12]) == sorted(e.fields["sentence"] for e in ctx.train)
    assert seen[:12] != seen[12:24]  # a fresh order per epoch


@pytest.mark.parametrize("cls", [PromptTuningSearcher, PTuningSearcher])
def test_masked_lm_with_soft_slots_after_the_answer(cls, tiny_masked_lm, sentiment_task) -> None:
    searcher = cls(templates=["{sentence} It was[P].[V*2]"], verbalizers=[VERBALIZER], steps=2, eval_every=1, seed=0)
    result = searcher.search(sentiment_task, tiny_masked_lm, progress=False)
    assert len(result.history) == 2 and result.test_metrics["n"] == 12


def test_bfloat16_autocast_trains(tiny_causal_lm, fact_task) -> None:
    searcher = PromptTuningSearcher(templates=["[V*2]The capital of {sub_label} is[P]"], dtype="bfloat16",
                                    steps=1, seed=0)
    result = searcher.search(fact_task, tiny_causal_lm, budget=Budget(iterations=1), progress=False)
    assert np.isfinite(result.history[0].scores["train_loss"])


def test_bad_settings_and_templates_are_refused(tiny_causal_lm, sentiment_task) -> None:
    with pytest.raises(AutopromptError, match="unknown prompt-tuning preset"):
        PromptTuningSearcher(preset="gpu")
    with pytest.raises(BudgetError, match="batch_size=0"):
        PromptTuningSearcher(batch_size=0)
    with pytest.raises(AutopromptError, match="unknown optimizer"):
        PromptTuningSearcher(optimizer="sgd")
    with pytest.raises(TemplateError, match="no \\[V\\] slots"):
        PromptTuningSearcher(templates=["{sentence} It was[P]"], verbalizers=[VERBALIZER]).search(
            sentiment_task, tiny_causal_lm, progress=False)
    with pytest.raises(TemplateError, match="cannot fill"):
        PTuningSearcher(templates=["{sentence} [T][V] It was[P]"], verbalizers=[VERBALIZER]).search(
            sentiment_task, tiny_causal_lm, progress=False)


def test_paper_preset_is_the_papers_setting() -> None:
    settings = PromptTuningSearcher(preset="paper").settings
    assert (settings.optimizer, settings.lr, settings.batch_size) == ("adafactor", 0.3, 32)


@pytest.mark.parametrize("masked", [False, True])
def test_cli_discover_then_evaluate_a_soft_prompt(masked, tiny_model_dir, tiny_masked_lm, tmp_path, capsys) -> None:
    if masked:
        tiny_model_dir = tmp_path / "bert"
        tiny_masked_lm.model.save_pretrained(tiny_model_dir)
        tiny_masked_lm.tokenizer.save_pretrained(tiny_model_dir)
    rows = {"train": ["good film", "bad film", "good plot", "bad plot"], "dev": ["good acting", "bad acting"],
            "test": ["good ending", "bad ending"]}
    for split, sentences in rows.items():
        lines = ["sentence\tlabel"] + [f"{s}\t{int(s.startswith('good'))}" for s in sentences]
        (tmp_path / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert main(["discover", "--searcher", "p-tuning", "--model", str(tiny_model_dir), "--data", str(tmp_path),
                 "--template", r"{sentence}[V*2]\nSentiment:[P]", "--verbalizer", '{"0":"bad","1":"good"}',
                 "--config", '{"steps": 2, "encoder": "mlp", "encoder_hidden": 8, "fallback": false}',
                 "--out", str(run)]) == 0
    assert (run / "prompt.safetensors").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(tmp_path / "test.tsv"),
                 "--prompt", str(run / "prompt.json")]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 2


def _tsv_task(folder, rows: dict[str, list[tuple[str, str]]]):
    folder.mkdir()
    for split, pairs in rows.items():
        (folder / f"{split}.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in pairs))
    return folder


def test_multi_task_training_mixes_tasks_then_initialises_one(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    other = _tsv_task(tmp_path / "topic", {
        "train": [("Paris is the capital of France", "city"), ("a great film", "film"),
                  ("Rome is the capital of Italy", "city"), ("a terrible movie", "film")],
        "dev": [("Berlin is the capital of Germany", "city"), ("a good movie", "film")]})
    also = [{"data": str(other), "template": "[V*2]{text} Topic:[P]", "verbalizer": {"city": "city", "film": "movie"}}]
    searcher = PromptTuningSearcher(templates=["[V*2]{sentence} It was[P]"], verbalizers=[VERBALIZER], also=also,
                                    batch_size=8, steps=3, eval_every=3, seed=0)
    ctx = _ctx(tiny_causal_lm, sentiment_task)
    searcher._prepare(ctx)
    assert {part for _ in range(2) for part, _ in searcher._next_batch(ctx)} == {0, 1}  # batches mix the tasks
    run = tmp_path / "multi"
    result = searcher.search(sentiment_task, tiny_causal_lm, run_dir=run, progress=False)
    assert json.loads((run / "config.json").read_text())["config"]["also"] == also
    # the selection score is the mean over both tasks' dev sets
    evaluator = Evaluator(tiny_causal_lm)
    topic = load_task(other)
    topic_prompt = Prompt.build(also[0]["template"], also[0]["verbalizer"], soft=result.prompt.soft)
    expected = np.mean([selection_score(evaluator.evaluate(result.prompt, sentiment_task.split("dev"), sentiment_task),
                                        "classification"),
                        selection_score(evaluator.evaluate(topic_prompt, topic.split("dev"), topic), "classification")])
    assert result.dev_score == pytest.approx(expected)
    single = PromptTuningSearcher(templates=["[V*2]{sentence} It was[P]"], verbalizers=[VERBALIZER],
                                  init=f"prompt:{run}", steps=1, seed=0)
    single._prepare(ctx)
    assert torch.equal(single.param.materialise().soft.detach(), Prompt.load(run).soft)
    with pytest.raises(TemplateError, match="same number"):
        PromptTuningSearcher(templates=["[V*3]{sentence} It was[P]"], verbalizers=[VERBALIZER], also=also).search(
            sentiment_task, tiny_causal_lm, progress=False)
