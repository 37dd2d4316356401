"""The Optuna searcher: its space, rung pruning, repeats, label words, and studies shared through storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autoprompt_search import Budget, Evaluator, Task
from autoprompt_search.errors import ConfigError, StudyError, VerbalizerError
from autoprompt_search.prompts.grammar import Grammar
from autoprompt_search.searchers import OptunaSearcher
from autoprompt_search.searchers.optuna_search import Space

REPO = Path(__file__).resolve().parents[1]
GRAMMAR = "<<|Review: |Text: >>{sentence}<< It was|\nIn short:| All in all, it was|\nSentiment:>>[P]"
VERBALIZERS = [{"0": "bad", "1": "good"}, {"0": "terrible", "1": "great"}]



def Optuna(**options) -> OptunaSearcher:
    """The optuna searcher without the calibration choice or the ensemble, so that its result is the
    study's best trial."""
    return OptunaSearcher(calibrate="off", ensemble=1, **options)

def _trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage).get_trials()


def test_space_turns_parameters_into_a_template_and_label_words() -> None:
    space = Space([GRAMMAR, "{sentence} Overall:[P]"], ["0", "1"], words=[["bad", "awful"], ["good"]])
    names = set(space.distributions())
    assert names == {"template", "t0.c0", "t0.c1", "word[0]"}  # one-option choices are no parameters
    assert space.candidate({}) == ("{sentence} It was[P]", {"0": "bad", "1": "good"})
    picked = space.candidate({"template": 0, "t0.c0": 2, "t0.c1": 3, "word[0]": "awful"})
    assert picked == ("Text: {sentence}\nSentiment:[P]", {"0": "awful", "1": "good"})
    assert space.candidate({"template": 1})[0] == "{sentence} Overall:[P]"
    whole = Space([GRAMMAR], ["0", "1"], verbalizers=VERBALIZERS)
    assert whole.candidate({"verbalizer": 1})[1] == VERBALIZERS[1]


def test_trials_are_scored_on_growing_slices_and_poor_ones_pruned(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    storage = str(tmp_path / "study.db")
    searcher = Optuna(templates=[GRAMMAR], verbalizers=VERBALIZERS, trials=12, rungs=3,
                              startup_trials=12, storage=storage, seed=1)
    result = searcher.search(sentiment_task, tiny_causal_lm, progress=False)
    trials = _trials(f"sqlite:///{storage}", "autoprompt-optuna")
    n_dev = len(sentiment_task.split("dev"))
    assert len(trials) == 12 and len(result.history) == 12
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned and complete
    for trial in pruned:
        assert max(trial.intermediate_values) < n_dev
    for trial in complete:
        assert sorted(trial.intermediate_values) == [3, 6, 12] and trial.value == trial.intermediate_values[12]
    best = max(complete, key=lambda t: t.value)
    assert result.dev_score == best.value
    assert result.prompt.template.source == best.user_attrs["template"]


def test_the_first_trial_is_the_given_prompt(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    storage = str(tmp_path / "study.db")
    searcher = Optuna(templates=[GRAMMAR], verbalizers=VERBALIZERS, trials=3, seed=5, storage=storage)
    searcher.search(sentiment_task, tiny_causal_lm, progress=False)
    first = _trials(f"sqlite:///{storage}", "autoprompt-optuna")[0]
    assert first.state == TrialState.COMPLETE  # scored in full: it competes in the final pick
    assert (first.user_attrs["template"], first.user_attrs["verbalizer"]) == Space(
        [GRAMMAR], ["0", "1"], verbalizers=VERBALIZERS).candidate({})


def test_given_words_stay_with_their_class() -> None:
    from autoprompt_search.searchers.optuna_search import _disjoint_words

    found = [["positive", "bad", "good"], ["great", "bad"]]  # label search's likely words for each class
    words = _disjoint_words(["0", "1"], [{"0": "negative", "1": "positive"}], found)
    assert words == [["negative", "bad", "good"], ["positive", "great"]]


def test_a_repeated_prompt_is_not_scored_again(tiny_causal_lm, sentiment_task) -> None:
    searcher = Optuna(templates=["{sentence} It was[P]"], verbalizers=VERBALIZERS[:1], trials=3)
    result = searcher.search(sentiment_task, tiny_causal_lm, progress=False)
    passes = [r.forward_passes for r in result.history]
    assert passes[0] > 0 and passes[0] == passes[1] == passes[2]
    assert "repeat of trial 0" in result.history[2].note
    assert result.history[2].scores == {"trial_2": result.dev_score}


def test_label_words_come_from_label_search_and_stay_disjoint(tiny_causal_lm, sentiment_task) -> None:
    searcher = Optuna(templates=["{sentence} It was[P]"], verbalizers=[{"0": "bad"}], label_top_k=3,
                              trials=4, seed=2)
    result = searcher.search(sentiment_task, tiny_causal_lm, progress=False)
    words = searcher._space.words
    assert words[0][0] == "bad" and len(words[1]) <= 3 and len(words[0]) <= 4
    assert not set(words[0]) & set(words[1])
    chosen = result.prompt.verbalizer.words
    assert chosen["0"][0] in words[0] and chosen["1"][0] in words[1]


def test_fact_tasks_search_templates_only(tiny_causal_lm, fact_task) -> None:
    searcher = Optuna(templates=["<<The capital of {sub_label} is|{sub_label}'s capital is>>[P]"], trials=2,
                              startup_trials=1)
    result = searcher.search(fact_task, tiny_causal_lm, progress=False)
    assert result.prompt.verbalizer is None and "p_at_1" in result.dev_metrics


def test_without_templates_the_builtin_grammar_is_searched(tiny_causal_lm, sentiment_task) -> None:
    searcher = Optuna(verbalizers=VERBALIZERS, trials=2)
    searcher.search(sentiment_task, tiny_causal_lm, progress=False)
    assert len(Grammar.parse(searcher._space.templates[0])) > 10


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"verbalizers": [], "label_top_k": 0}, VerbalizerError, "needs label words"),
    ({"verbalizers": VERBALIZERS, "pruner": "hyperband"}, StudyError, "unknown pruner"),
    ({"verbalizers": VERBALIZERS, "trials": 0}, ConfigError, "trials=0 leaves it no work"),
    ({"verbalizers": VERBALIZERS, "storage": "postgresql://u:secret@127.0.0.1:1/db"}, StudyError, r"u:\*\*\*@"),
])
def test_bad_options_are_refused(tiny_causal_lm, sentiment_task, options, error, match) -> None:
    with pytest.raises(error, match=match):
        Optuna(templates=["{sentence} It was[P]"], **options).search(
            sentiment_task, tiny_causal_lm, budget=Budget(iterations=1), progress=False)


def test_a_second_run_joins_a_stored_study_and_searches_its_space(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    storage = str(tmp_path / "study.db")
    first = Optuna(templates=[GRAMMAR], verbalizers=VERBALIZERS, trials=2, storage=storage, seed=0)
    first.search(sentiment_task, tiny_causal_lm, progress=False)
    second = Optuna(templates=["{sentence} Other:[P]"], verbalizers=VERBALIZERS, trials=2, storage=storage,
                            seed=1)
    result = second.search(sentiment_task, tiny_causal_lm, progress=False)
    trials = _trials(f"sqlite:///{storage}", "autoprompt-optuna")
    assert len(trials) == 4 and len({t.user_attrs["worker"] for t in trials}) == 2
    assert result.prompt.template.source in set(Grammar.parse(GRAMMAR).expand())


def test_resume_on_a_stored_study_fails_the_interrupted_trial(tiny_causal_lm, sentiment_task, tmp_path) -> None:
    storage = str(tmp_path / "study.db")
    evaluator = Evaluator(tiny_causal_lm)
    make = lambda: Optuna(templates=[GRAMMAR], verbalizers=VERBALIZERS, trials=3, storage=storage)  # noqa: E731
    scored = 0

    def killed_midway(*args, **kwargs):  # trial 0 scores 3 rungs; the kill lands in trial 1's first rung
        nonlocal scored
        scored += 1
        if scored == 4:
            raise KeyboardInterrupt
        return Evaluator.score(evaluator, *args, **kwargs)

    evaluator.score = killed_midway
    with pytest.raises(KeyboardInterrupt):
        make().search(sentiment_task, tiny_causal_lm, evaluator=evaluator, run_dir=tmp_path / "run", progress=False)
    result = make().search(sentiment_task, tiny_causal_lm, run_dir=tmp_path / "run", resume=True, progress=False)
    states = [t.state for t in _trials(f"sqlite:///{storage}", "autoprompt-optuna")]
    assert TrialState.RUNNING not in states and TrialState.FAIL in states
    assert len(result.history) == 3 and len(states) == 4


# --- several processes on one study ---------------------------------------------------------------

def _write_task(task: Task, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        rows = [f"{e.fields['sentence']}\t{e.label}" for e in task.split(split)]
        (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return folder


def _workers_share_a_study(storage: str, study: str, model: Path, data: Path, out: Path) -> None:
    """Two CLI processes with different seeds run 3 trials each on one study, at the same time."""
    config = json.dumps({"storage": storage, "study": study, "trials": 3, "rungs": 2, "startup_trials": 2,
                         "verbalizers": VERBALIZERS, "calibrate": "off", "ensemble": 1})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "autoprompt_search.cli", "discover", "--searcher", "optuna", "--model", str(model),
             "--data", str(data), "--template", GRAMMAR.replace("\n", r"\n"), "--config", config,
             "--seed", str(seed), "--out", str(out / f"worker{seed}"),
             "--output-json", str(out / f"worker{seed}.json")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (1, 2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-2000:]
    trials = _trials(storage, study)
    assert len(trials) == 6 and all(t.state.is_finished() for t in trials)
    assert sorted(t.number for t in trials) == list(range(6))
    by_worker: dict[str, int] = {}
    for trial in trials:
        by_worker[trial.user_attrs["worker"]] = by_worker.get(trial.user_attrs["worker"], 0) + 1
    assert sorted(by_worker.values()) == [3, 3]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    last_to_finish = max(trials, key=lambda t: t.datetime_complete).user_attrs["worker"]
    for seed in (1, 2):
        assert json.loads((out / f"worker{seed}.json").read_text())["steps"] == 3
        saved = json.loads((out / f"worker{seed}" / "result.json").read_text())
        worker = json.loads((out / f"worker{seed}" / "checkpoint" / "state.json").read_text())["searcher"]["worker"]
        own = [t.value for t in complete if t.user_attrs["worker"] == worker]
        # each worker reports the study's best when it finished, whoever found it: never worse than its own
        # trials, always some trial's score; the worker that finished last has seen every trial
        assert saved["dev_score"] in {t.value for t in complete}
        assert saved["dev_score"] >= max(own, default=float("-inf"))
        if worker == last_to_finish:
            assert saved["dev_score"] == max(t.value for t in complete)


def test_two_processes_share_one_sqlite_study(tiny_model_dir, sentiment_task, tmp_path) -> None:
    data = _write_task(sentiment_task, tmp_path / "data")
    _workers_share_a_study(f"sqlite:///{tmp_path / 'study.db'}", "shared", tiny_model_dir, data, tmp_path)


def test_two_processes_share_one_postgresql_study(tiny_model_dir, sentiment_task, tmp_path) -> None:
    url = os.environ.get("AUTOPROMPT_TEST_POSTGRES")
    if not url:
        pytest.skip("no PostgreSQL server: set AUTOPROMPT_TEST_POSTGRES to a postgresql:// URL (.ci/run starts one)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver psycopg is not installed (pip install '.[dev]')")
    data = _write_task(sentiment_task, tmp_path / "data")
    _workers_share_a_study(url, f"shared-{uuid.uuid4().hex}", tiny_model_dir, data, tmp_path)
