"""Hyperparameter tuning of any searcher (``tune`` API and CLI) and the study helpers it shares."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from autoprompt_search import Budget
from autoprompt_search.cli import app as cli
from autoprompt_search.errors import ConfigError, StudyError
from autoprompt_search.searchers.studies import (
    _shown,
    open_study,
    parse_space,
    storage_url,
    trial_from_json,
    trial_to_json,
)
from autoprompt_search.tuning.tune import tune

SPACE = {"top_k": ["int", 2, 4], "allow_capitalized": ["categorical", [True, False]]}
BASE = {"templates": ["{sentence} It was[P]"], "finalists": 2, "per_step": 2}


def test_tune_runs_one_inner_search_per_trial(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    result = tune("label-search", SPACE, sentiment_task, tiny_causal_lm, config=BASE, trials=3,
                  budget=Budget(iterations=1), startup_trials=2, seed=4, out=tmp_path, progress=False)
    assert len(result.trials) == 3 and {t["state"] for t in result.trials} == {"COMPLETE"}
    for trial in result.trials:
        assert 2 <= trial["params"]["top_k"] <= 4
        saved = json.loads((Path(trial["run_dir"]) / "result.json").read_text())
        assert saved["config"]["top_k"] == trial["params"]["top_k"] and saved["dev_score"] == trial["value"]
    assert result.best_value == max(t["value"] for t in result.trials)
    assert (Path(result.best_run) / "prompt.json").is_file()
    assert json.loads((tmp_path / "tune.json").read_text())["best_params"] == result.best_params


def test_tune_is_reproducible_for_a_seed(tiny_causal_lm, sentiment_task) -> None:
    runs = [tune("label-search", SPACE, sentiment_task, tiny_causal_lm, config=BASE, trials=3, startup_trials=1,
                 budget=Budget(iterations=1), seed=9, progress=False) for _ in range(2)]
    assert runs[0].trials == runs[1].trials


def test_a_worker_resumes_from_its_out_folder(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    storage = str(tmp_path / "tune.db")
    options = {"config": BASE, "budget": Budget(iterations=1), "storage": storage, "out": tmp_path / "w",
               "progress": False}
    tune("label-search", SPACE, sentiment_task, tiny_causal_lm, trials=1, **options)
    study = optuna.load_study(study_name="autoprompt-tune", storage=f"sqlite:///{storage}")
    killed = study.ask(parse_space(SPACE))  # the trial a kill interrupted
    killed.set_user_attr("worker", str((tmp_path / "w").resolve()))
    result = tune("label-search", SPACE, sentiment_task, tiny_causal_lm, trials=3, **options)
    assert [t["state"] for t in result.trials] == ["COMPLETE", "FAIL", "COMPLETE"]


def test_inner_searches_that_trail_are_pruned(tiny_causal_lm, sentiment_task) -> None:
    """The median pruner stops inner searches whose best-so-far trails the completed ones at the same step.

    (Which ``per_step`` values trail depends on the sampler's draws and on near-ties of the tiny model's
    scores, so the check is on the scores the pruner saw, not on the parameters.)"""
    templates = ["{sentence} It was[P]", "Review: {sentence}\nSentiment:[P]", "{sentence}\nIn short:[P]",
                 "{sentence} All in all, it was[P]", "Text: {sentence}\nAnswer:[P]"]
    result = tune("manual", {"per_step": ["int", 1, 4]}, sentiment_task, tiny_causal_lm,
                  config={"templates": templates, "verbalizers": [{"0": "bad", "1": "good"}]}, trials=8,
                  pruner="median", startup_trials=2, budget=Budget(iterations=2), seed=0, progress=False)
    states = [t["state"] for t in result.trials]
    assert "PRUNED" in states and "COMPLETE" in states
    best_complete = max(t["value"] for t in result.trials if t["state"] == "COMPLETE")
    # within fp32 rounding: one prompt scored in differently packed batches differs by ~1e-7
    assert all(t["value"] <= best_complete + 1e-6 for t in result.trials if t["state"] == "PRUNED")


@pytest.mark.parametrize(("space", "error", "match"), [
    ({"temperature": ["float", 0.1, 1.0]}, ConfigError, "unknown option"),
    ({"top_k": ["int", 2.5, 4]}, StudyError, "whole numbers"),
    ({"top_k": ["uniform", 2, 4]}, StudyError, "is not valid"),
    ({}, StudyError, "must be a JSON object"),
])
def test_bad_spaces_are_refused(tiny_causal_lm, sentiment_task, space, error, match) -> None:
    with pytest.raises(error, match=match):
        tune("label-search", space, sentiment_task, tiny_causal_lm, config=BASE, trials=1, progress=False)


def test_cli_tune_prints_the_best_options(tiny_model_dir, tmp_path, capsys) -> None:
    code = cli.main(["tune", "--searcher", "manual", "--model", str(tiny_model_dir), "--data", "sentiment",
                     "--space", '{"per_step": ["int", 1, 3]}', "--trials", "2", "--iterations", "1",
                     "--storage", str(tmp_path / "t.db"), "--out", str(tmp_path / "tune")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trials"] == 2 and 1 <= summary["best_params"]["per_step"] <= 3
    assert (tmp_path / "tune" / "tune.json").is_file()


def test_space_kinds_become_optuna_distributions() -> None:
    space = parse_space({"n": ["int", 8, 32], "lr": ["log", 1e-3, 1e-1], "p": ["float", 0, 1],
                         "mode": ["categorical", ["random", "cycle"]]})
    assert space == {"n": IntDistribution(8, 32), "lr": FloatDistribution(1e-3, 1e-1, log=True),
                     "p": FloatDistribution(0.0, 1.0), "mode": CategoricalDistribution(["random", "cycle"])}


def test_storage_urls_and_messages(tmp_path) -> None:
    assert storage_url(None) is None and storage_url("memory") is None
    assert storage_url(tmp_path / "s.db") == f"sqlite:///{tmp_path / 's.db'}"
    assert storage_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert _shown("postgresql://user:pw@host:5432/db") == "postgresql://user:***@host:5432/db"
    assert _shown("postgresql://user@host/db") == "postgresql://user@host/db"
    with pytest.raises(StudyError, match="cannot open the study storage"):
        open_study(str(tmp_path / "no" / "such" / "folder" / "s.db"), "x")


def test_trials_round_trip_through_json() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1))
    trial = study.ask({"a": CategoricalDistribution([0, 1, 2])})
    trial.report(0.5, 3)
    trial.should_prune()  # writes the pruner's rung attributes
    trial.set_user_attr("template", "{sentence}[P]")
    study.tell(trial, 0.75)
    frozen = study.trials[0]
    again = trial_from_json(json.loads(json.dumps(trial_to_json(frozen))))
    assert again.state == TrialState.COMPLETE and again.value == 0.75 and again.params == frozen.params
    assert again.intermediate_values == {3: 0.5} and again.system_attrs == frozen.system_attrs
    assert again.user_attrs == frozen.user_attrs and again.distributions == frozen.distributions
