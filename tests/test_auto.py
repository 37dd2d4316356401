"""The ``auto`` pipeline and the one-call API; fluency; soft-prompt checkpoint averaging; k-fold CV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import autoprompt_search
from autoprompt_search import SEARCHERS, Budget, EnsemblePrompt, Prompt, load_prompt
from autoprompt_search.cli import main
from autoprompt_search.scoring.fluency import mean_log_likelihoods, perplexity, template_ids
from autoprompt_search.scoring.selection import GuardResult
from autoprompt_search.searchers import auto as auto_module
from autoprompt_search.searchers.cross_validation import cross_validate

VERBALIZER = {"0": "bad", "1": "good"}
GRAMMAR = "<<|Review: >>{sentence}<< It was|\nSentiment:>>[P]"


def _auto(seed: int = 0, **options) -> object:
    config = {"templates": ["{sentence} It was[P]"], "verbalizers": [VERBALIZER], "grammar": GRAMMAR,
              "builtin": False, "finalists": 3, "ensemble": 2, "soft": "on", "soft_tokens": 2, "soft_steps": 4}
    return SEARCHERS["auto"](**{**config, **options}, seed=seed)


def test_auto_runs_every_stage_and_records_the_evidence(tiny_causal_lm, sentiment_task, tmp_path: Path) -> None:
    result = _auto().search(sentiment_task, tiny_causal_lm, run_dir=tmp_path, progress=False)
    notes = [r.note.split(":")[0] for r in result.history]
    assert "discrete" in notes and "soft" in notes and notes.index("discrete") < notes.index("soft")
    evidence = result.selection
    assert evidence["stages"]["soft"] is True and evidence["final"]["decision"] in ("discrete", "soft", "both")
    assert evidence["ensemble"]["members"] == 2 and "guard" in evidence
    assert result.dev_score == pytest.approx(evidence["final"]["scores"][evidence["final"]["decision"]])
    saved = load_prompt(tmp_path)
    assert saved.render() == result.prompt.render()


def test_auto_resumes_in_the_soft_stage_exactly(tiny_causal_lm, sentiment_task, tmp_path: Path) -> None:
    straight = _auto(seed=3).search(sentiment_task, tiny_causal_lm, progress=False)
    soft_step = next(r.step for r in straight.history if r.note.startswith("soft"))

    class Stop(Exception):
        pass

    def stop(record) -> None:
        if record.step == soft_step + 1:
            raise Stop

    with pytest.raises(Stop):
        _auto(seed=3).search(sentiment_task, tiny_causal_lm, run_dir=tmp_path, callbacks=[stop], progress=False)
    resumed = _auto(seed=3).search(sentiment_task, tiny_causal_lm, run_dir=tmp_path, resume=True, progress=False)
    strip = [{k: v for k, v in vars(r).items() if k != "seconds"} for r in straight.history]
    assert [{k: v for k, v in vars(r).items() if k != "seconds"} for r in resumed.history] == strip
    assert resumed.selection["final"] == straight.selection["final"]


def test_auto_skips_the_soft_stage_when_the_budget_cannot_afford_it(tiny_causal_lm, sentiment_task) -> None:
    options = {"soft": "auto", "soft_steps": 10_000}
    result = _auto(**options).search(sentiment_task, tiny_causal_lm, budget=Budget(forward_passes=3000),
                                     progress=False)
    assert result.selection["stages"]["soft"] is False
    assert all(not r.note.startswith("soft") for r in result.history)


def test_auto_keeps_the_fact_metric(tiny_causal_lm, fact_task) -> None:
    result = SEARCHERS["auto"](templates=["The capital of {sub_label} is[P]", "{sub_label}'s capital is[P]"],
                               builtin=False, seed=0).search(fact_task, tiny_causal_lm, progress=False)
    assert result.selection["by"] == "p_at_1" and "p_at_1" in result.dev_metrics


def test_discover_one_call_api(tiny_causal_lm, sentiment_task, tmp_path: Path) -> None:
    result = autoprompt_search.discover(sentiment_task, tiny_causal_lm, budget=Budget(iterations=20),
                                        templates=["{sentence} It was[P]"], verbalizers=[VERBALIZER], builtin=False,
                                        grammar=GRAMMAR, soft="off", run_dir=tmp_path, progress=False)
    assert result.searcher == "auto" and isinstance(result.prompt, EnsemblePrompt)
    assert (tmp_path / "members" / "0" / "prompt.json").is_file()


def test_cli_discover_runs_auto_by_default(tiny_model_dir, tmp_path: Path, capsys) -> None:
    code = main(["discover", "--model", str(tiny_model_dir), "--out", str(tmp_path), "--iterations", "3",
                 "--config", json.dumps({"builtin": False, "soft": "off"})])
    assert code == 0
    assert json.loads((tmp_path / "config.json").read_text())["searcher"] == "auto"
    out = capsys.readouterr().out
    assert json.loads(out[out.index("\n{") + 1 :])["chosen"]["kind"] in ("single", "ensemble")


def test_fluency_scores_and_perplexity(tiny_causal_lm) -> None:
    prompt = Prompt.build("Review: {sentence}\nSentiment:[P]", VERBALIZER)
    assert template_ids(prompt, tiny_causal_lm) == tiny_causal_lm.tokenize("Review: ") + tiny_causal_lm.tokenize(
        "\nSentiment:")
    prompts = [Prompt.build("The review was positive: a great film.[P]", VERBALIZER),
               Prompt.build("{sentence} cast[P]", VERBALIZER), prompt]
    batched = mean_log_likelihoods(tiny_causal_lm, prompts)  # padded together
    for value, one in zip(batched, prompts, strict=True):  # equals each text scored alone, by hand
        ids = torch.tensor([[*tiny_causal_lm.prefix_ids, *template_ids(one, tiny_causal_lm)]])
        log_p = torch.log_softmax(tiny_causal_lm.model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        assert value == pytest.approx(float(log_p.gather(1, ids[0, 1:, None]).mean()), abs=1e-5)
    assert len(set(batched)) == 3
    assert perplexity(tiny_causal_lm, prompt) == pytest.approx(
        __import__("math").exp(-mean_log_likelihoods(tiny_causal_lm, [prompt])[0]))


def test_saved_discrete_prompts_report_their_perplexity(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    SEARCHERS["manual"](templates=["Review: {sentence}\nSentiment:[P]"], verbalizers=[VERBALIZER]).search(
        sentiment_task, tiny_causal_lm, run_dir=tmp_path, progress=False)
    data = json.loads((tmp_path / "prompt.json").read_text())
    assert data["perplexity"] > 1 and load_prompt(tmp_path).perplexity == data["perplexity"]


@pytest.mark.parametrize("name", ["filter", "autoprompt"])
def test_fluency_weight_changes_the_ranking_inputs(name, tiny_causal_lm, sentiment_task) -> None:
    configs = {"filter": {"templates": ["{sentence} It was[P]"], "verbalizers": [VERBALIZER], "builtin": False,
                          "grammar": GRAMMAR, "first_slice": 4, "calibrate": "off"},
               "autoprompt": {"templates": ["{sentence} [T*2] It was[P]"], "verbalizers": [VERBALIZER],
                              "num_cand": 4, "batch_size": 4, "iterations": 2, "calibrate": "off"}}
    runs = [SEARCHERS[name](**configs[name], fluency=weight, seed=0).search(
        sentiment_task, tiny_causal_lm, budget=Budget(iterations=1), progress=False) for weight in (0.0, 5.0)]
    first = [{k: v for k, v in r.history[0].scores.items() if k not in ("slot", "accepted", "train_loss")}
             for r in runs]
    assert first[0] != first[1]


def test_soft_checkpoint_averaging_is_scored_and_resumes(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    def searcher():
        return SEARCHERS["prompt-tuning"](templates=["[V*2]{sentence} It was[P]"], verbalizers=[VERBALIZER],
                                          batch_size=3, eval_every=1, steps=4, patience=0, average=3, fallback=False,
                                          seed=1)

    straight = searcher().search(sentiment_task, tiny_causal_lm, progress=False)
    assert "dev_average" in straight.history[1].scores and "dev_average" not in straight.history[0].scores
    seen = [r.scores[k] for r in straight.history for k in ("dev", "dev_average") if k in r.scores]
    assert straight.dev_score == pytest.approx(max([straight.history[0].best_score, *seen]))

    class Stop(Exception):
        pass

    def stop(record) -> None:
        if record.step == 2:
            raise Stop

    with pytest.raises(Stop):
        searcher().search(sentiment_task, tiny_causal_lm, run_dir=tmp_path, callbacks=[stop], progress=False)
    resumed = searcher().search(sentiment_task, tiny_causal_lm, run_dir=tmp_path, resume=True, progress=False)
    assert [r.scores for r in resumed.history] == [r.scores for r in straight.history]


def test_cross_validation_of_the_whole_search(tiny_causal_lm, sentiment_task) -> None:
    def factory(seed: int):
        return SEARCHERS["manual"](templates=["{sentence} It was[P]", "Review: {sentence}\nSentiment:[P]"],
                                   verbalizers=[VERBALIZER], calibrate="off", seed=seed)

    cv = cross_validate(factory, sentiment_task, tiny_causal_lm, folds=3, seed=0)
    assert len(cv.folds) == 3 and sum(f["n"] for f in cv.folds) == 24
    assert cv.mean["class_logprob"] == pytest.approx(sum(f["class_logprob"] * f["n"] for f in cv.folds) / 24)
    assert cv.searches == 3


@pytest.mark.parametrize("passes", [False, True])
def test_the_guard_also_holds_for_the_soft_pick(passes, tiny_causal_lm, sentiment_task, monkeypatch) -> None:
    """With the guard on, the soft prompt replaces the discrete pick only if it passes the guard
    against that pick on dev (the tiny model never prefers its soft prompt, so dev is told it does)."""
    real_guard = auto_module.guard

    def rigged(candidate, reference, level, seed):
        real = real_guard(candidate, reference, level, seed)
        return GuardResult(real.level, real.gain, real.lower, passes)

    monkeypatch.setattr(auto_module, "top_indices", lambda scores, k: [1])  # "soft" scored best on dev
    monkeypatch.setattr(auto_module, "guard", rigged)
    guarded = _auto(seed=1, guard=0.9).search(sentiment_task, tiny_causal_lm, progress=False)
    final = guarded.selection["final"]
    assert final["guard"]["against"] == "discrete" and final["guard"]["passed"] is passes
    assert final["guard"]["gain"] == pytest.approx(final["scores"]["soft"] - final["scores"]["discrete"], abs=1e-4)
    assert final["decision"] == ("soft" if passes else "discrete")
    assert guarded.dev_score == pytest.approx(final["scores"][final["decision"]])
    assert ("[V" in guarded.prompt.render()) is passes  # the soft prompt, else the discrete pick
    unguarded = _auto(seed=1).search(sentiment_task, tiny_causal_lm, progress=False)
    assert "guard" not in unguarded.selection["final"] and unguarded.selection["final"]["decision"] == "soft"
