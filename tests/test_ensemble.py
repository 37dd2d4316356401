"""Ensembles as a first-class result: combination, one mixed run, save/load, searchers returning top-k."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from autoprompt_search import SEARCHERS, Budget, EnsemblePrompt, Evaluator, Prompt, load_prompt
from autoprompt_search.cli import main
from autoprompt_search.errors import TemplateError
from autoprompt_search.prompts.calibration import Calibration
from autoprompt_search.prompts.ensemble import combine
from autoprompt_search.scoring.ensembles import fit_logistic

VERBALIZER = {"0": "bad", "1": "good"}


def _members(lm) -> list[Prompt]:
    soft = Prompt.build("[V*2]{sentence} It was[P]", VERBALIZER,
                        soft=torch.randn(2, lm.hidden_size, generator=torch.Generator().manual_seed(0)))
    return [Prompt.build("{sentence} It was[P]", VERBALIZER),
            Prompt.build("Review: {sentence}\nSentiment:[P]", {"0": "terrible", "1": "great"},
                         calibration=Calibration()),
            soft]


def test_ensemble_scores_equal_the_combination_of_member_scores_one_by_one(tiny_causal_lm, sentiment_task) -> None:
    members = _members(tiny_causal_lm)
    ensemble = EnsemblePrompt(tuple(members))
    dev = sentiment_task.split("dev")
    one_by_one = np.stack([Evaluator(tiny_causal_lm).score([m], dev, sentiment_task).scores[0] for m in members])
    expected = log_softmax(log_softmax(one_by_one, axis=2).mean(axis=0), axis=1)
    evaluator = Evaluator(tiny_causal_lm)
    table = evaluator.score([ensemble, members[0]], dev, sentiment_task)
    np.testing.assert_allclose(table.scores[0], expected, atol=1e-4)
    np.testing.assert_allclose(table.scores[1], one_by_one[0], atol=1e-4)
    assert evaluator.evaluate(ensemble, dev, sentiment_task)["accuracy"] == pytest.approx(
        np.mean(expected.argmax(1) == table.gold))


def test_members_are_scored_in_one_mixed_run(tiny_causal_lm, sentiment_task, monkeypatch) -> None:
    evaluator = Evaluator(tiny_causal_lm)
    calls = []
    original = evaluator._score_chunk
    monkeypatch.setattr(evaluator, "_score_chunk", lambda *a: calls.append(1) or original(*a))
    evaluator.score([EnsemblePrompt(tuple(_members(tiny_causal_lm)))], sentiment_task.split("dev"), sentiment_task)
    assert len(calls) == 1


def test_logistic_rule_fits_weights_and_beats_the_mean_on_its_data() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, size=40)
    sign = np.where(gold == 0, 1.0, -1.0)
    good = np.stack([sign, -sign], axis=1) + rng.normal(0, 0.5, (40, 2))
    noise = rng.normal(0, 2.0, (40, 2))
    scores = np.stack([good, noise])
    weights, bias = fit_logistic(scores, gold)
    assert weights[0] > weights[1]
    nll = [-combine(scores, rule, w, b)[np.arange(40), gold].mean()
           for rule, w, b in (("mean", None, None), ("logistic", weights, bias))]
    assert nll[1] < nll[0]


def test_save_and_load_round_trip(tiny_causal_lm, sentiment_task, tmp_path: Path) -> None:
    evaluator = Evaluator(tiny_causal_lm)
    members = [evaluator.resolved(m, sentiment_task) for m in _members(tiny_causal_lm)]
    ensemble = EnsemblePrompt(tuple(members), "logistic", (0.5, 0.3, 0.2), (0.1, -0.1), ("0", "1"))
    ensemble.save(tmp_path, tiny_causal_lm.decode)
    loaded = load_prompt(tmp_path)
    assert isinstance(loaded, EnsemblePrompt) and loaded == ensemble
    assert torch.equal(loaded.members[2].soft, members[2].soft)
    dev = sentiment_task.split("dev")
    np.testing.assert_allclose(evaluator.score([loaded], dev, sentiment_task).scores,
                               evaluator.score([ensemble], dev, sentiment_task).scores)
    assert json.loads((tmp_path / "prompt.json").read_text())["kind"] == "ensemble"


def test_bad_ensembles_are_refused(sentiment_task, fact_task, tiny_causal_lm) -> None:
    with pytest.raises(TemplateError, match="at least one member"):
        EnsemblePrompt(())
    with pytest.raises(TemplateError, match="one weight per member"):
        EnsemblePrompt((Prompt.build("{sentence}[P]", VERBALIZER),), "logistic")
    with pytest.raises(TemplateError, match="fact task"):
        Evaluator(tiny_causal_lm).score([EnsemblePrompt((Prompt.build("{sub_label} is[P]"),))],
                                        fact_task.split("dev"), fact_task)


@pytest.mark.parametrize("name", ["manual", "filter", "optuna", "autoprompt"])
def test_searchers_return_their_top_k_as_an_ensemble(name, tiny_causal_lm, sentiment_task, tmp_path) -> None:
    configs = {
        "manual": {"templates": ["{sentence} It was[P]", "Review: {sentence}\nSentiment:[P]"],
                   "verbalizers": [VERBALIZER]},
        "filter": {"templates": ["{sentence} It was[P]"], "verbalizers": [VERBALIZER], "builtin": False,
                   "grammar": "<<|Review: >>{sentence}<< It was|\nSentiment:>>[P]", "first_slice": 4},
        "optuna": {"templates": ["<<|Review: >>{sentence}<< It was|\nIn short:>>[P]"], "verbalizers": [VERBALIZER],
                   "trials": 4, "rungs": 1},
        "autoprompt": {"templates": ["{sentence} [T*2] It was[P]"], "verbalizers": [VERBALIZER], "num_cand": 4,
                       "batch_size": 4, "iterations": 2},
    }
    searcher = SEARCHERS[name](**configs[name], ensemble=3, combine="mean", seed=0)
    result = searcher.search(sentiment_task, tiny_causal_lm, budget=Budget(iterations=8), run_dir=tmp_path,
                             progress=False)
    assert isinstance(result.prompt, EnsemblePrompt) and 2 <= len(result.prompt.members) <= 3
    assert result.selection["chosen"]["kind"] == "ensemble"
    again = Evaluator(tiny_causal_lm).evaluate(load_prompt(tmp_path), sentiment_task.split("test"), sentiment_task)
    assert again["accuracy"] == pytest.approx(result.test_metrics["accuracy"])


def test_cli_evaluate_and_evaluate_many_accept_an_ensemble(tiny_causal_lm, tiny_model_dir, sentiment_task,
                                                           tmp_path, capsys) -> None:
    EnsemblePrompt(tuple(_members(tiny_causal_lm)[:2])).save(tmp_path / "ens", tiny_causal_lm.decode)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"sentence": e.fields["sentence"], "label": e.label}) + "\n"
                            for e in sentiment_task.split("test")))
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--prompt",
                 str(tmp_path / "ens")]) == 0
    single = json.loads(capsys.readouterr().out)
    assert single["template"].startswith("ensemble (mean) of 2")
    assert main(["evaluate-many", "--model", str(tiny_model_dir), "--job", f"{tmp_path / 'ens'}={data}"]) == 0
    many = json.loads(capsys.readouterr().out)
    assert many["jobs"][0]["accuracy"] == pytest.approx(single["accuracy"])


@pytest.mark.parametrize(("name", "members"), [("filter", 5), ("optuna", 5), ("auto", 5), ("manual", 1),
                                                ("label-search", 1), ("autoprompt", 1)])
def test_many_candidate_searchers_default_to_a_top_5_ensemble(name, members) -> None:
    """Searchers that rank many different templates return their top 5 by default (a single pick on
    a small selection split is mostly noise); the given prompt's searcher, AutoPrompt (one candidate
    against its template) and label search (word sets for one template: their errors are shared, and
    their top-5 ensemble measured worse than the single pick on sst2-16shot) stay single."""
    options = {"templates": ["{sentence} It was[P]"]} if name == "manual" else {}
    assert SEARCHERS[name](**options).selection_policy().ensemble == members
