"""The leaderboard runner's infrastructure: the score cache, suite variants and filters, record
staleness, progress, checkpoints for time to quality, full-data SST-2, and Dask fault tolerance.

Jobs run on the tiny random causal LM (saved to a folder) and the demo tasks: no real model, no data.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from generation_fixtures import ROWS, TEMPLATE

from autoprompt_search import Demonstrations, Evaluator, Prompt, load_demo
from autoprompt_search.prompts.ensemble import EnsemblePrompt
from autoprompt_search.scoring.text_metrics import bleu_from_statistics, corpus_bleu
from benchmarks import plots, report, run
from benchmarks.jobs import Incumbents, Snapshot, frozen_copy
from benchmarks.score_cache import ScoreCache, cache_key
from benchmarks.sst_full import full_sentences
from benchmarks.suite import SuiteError, load_suite
from benchmarks.tasks import lama_variables, load_benchmark_task

SENTIMENT = "Review: {sentence}\nSentiment:[P]"
WORDS = {"negative": "bad", "positive": "good"}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's score cache."""
    monkeypatch.setenv("AUTOPROMPT_SEARCH_CACHE", str(tmp_path / "user-cache"))


def _suite(folder: Path, model: Path, **searchers: dict) -> Path:
    spec = {
        "model": str(model), "seeds": [1, 2], "baseline": "manual", "checkpoints": [0.9],
        "tasks": [{"name": "sentiment", "data": {"demo": "sentiment"}, "template": SENTIMENT, "verbalizer": WORDS,
                   "other": "{sentence} It was[P]", "third": "Text: {sentence}\nLabel:[P]"},
                  {"name": "capitals", "data": {"demo": "capitals", "limit": 10},
                   "template": "The capital of {sub_label} is[P]", "other": "{sub_label}'s capital is[P]",
                   "third": "Capital of {sub_label}:[P]", "verbalizer": None}],
        "searchers": {"manual": {"budget": {"iterations": 3},  # one template per step: 3 steps, checkpoints
                                 "config": {"templates": ["$template", "$other", "$third"],
                                            "verbalizers": ["$verbalizer"], "per_step": 1}},
                      **searchers},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


# --- the score cache ----------------------------------------------------------------------------
def test_a_rerun_with_its_jsons_deleted_makes_no_test_forward_pass(
        tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    args = [str(_suite(tmp_path, tiny_model_dir)), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c")]
    assert run.main(args) == 0
    first = _records(tmp_path / "out" / "tiny")
    assert len(first) == 4 and all(r["checkpoints"] for r in first.values())
    assert sum(r["test_scoring"]["forward_rows"] for r in first.values()) > 0
    assert first["sentiment__manual__seed2"]["test_scoring"]["misses"] == 0  # seed 2 ends on seed 1's prompt
    for path in (tmp_path / "out" / "tiny").glob("*.json"):
        path.unlink()
    capsys.readouterr()
    assert run.main(args) == 0
    printed = capsys.readouterr().err
    assert "test scoring this run: 8 lookups, 8 hits, 0 misses (hit rate 100 %), 0 forward rows" in printed
    second = _records(tmp_path / "out" / "tiny")
    for name, record in second.items():
        assert record["test_scoring"] == {"hits": 2, "misses": 0, "forward_rows": 0, "decoded_texts": 0}
        assert record["test_cached"]
        assert record["test_predictions"] == first[name]["test_predictions"]
        assert [c["test_score"] for c in record["checkpoints"]] == [c["test_score"] for c in first[name]["checkpoints"]]


def test_generation_jobs_decode_test_once_and_report_bleu_with_a_paired_bootstrap(
        tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data" / "gen"
    data.mkdir(parents=True)
    for split, rows in (("train", ROWS[:4]), ("dev", ROWS[2:5]), ("test", ROWS[3:])):
        lines = [json.dumps({"mr": mr, "target": list(refs)}) for mr, refs in rows]
        (data / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = {"model": str(tiny_model_dir), "seeds": [1, 2], "baseline": "manual", "also_against": ["manual-1shot"],
            "tasks": [{"name": "gen", "data": {"folder": "gen"}, "template": TEMPLATE}],
            "searchers": {"manual": {"budget": {"iterations": 1}, "config": {"templates": ["$template"]}},
                          "manual-1shot": {"base": "manual", "evaluator": {"demos": {"k": 1, "per_class": False}}}}}
    suite = tmp_path / "gen.yaml"
    suite.write_text(yaml.safe_dump(spec), encoding="utf-8")
    out = tmp_path / "out"
    args = [str(suite), "--out", str(out), "--cache", str(tmp_path / "c"), "--data-dir", str(tmp_path / "data")]
    assert run.main(args) == 0
    first = _records(out / "gen")
    references = [list(refs) for _, refs in ROWS[3:]]
    for record in first.values():
        predictions = record["test_predictions"]
        assert record["metric"] == "bleu" and not record["checkpoints"]
        assert len(predictions["texts"]) == len(predictions["rouge_l"]) == len(references)
        bleu = corpus_bleu(predictions["texts"], references)
        assert bleu_from_statistics(predictions["bleu_stats"]) == pytest.approx(bleu)
        assert record["test_score"] == pytest.approx(bleu / 100)
    assert first["gen__manual__seed1"]["test_scoring"]["decoded_texts"] == len(references)
    assert first["gen__manual__seed2"]["test_cached"]  # the same prompt on the same test: decoded once
    for path in (out / "gen").glob("*.json"):
        path.unlink()
    assert run.main(args) == 0
    second = _records(out / "gen")
    assert all(r["test_cached"] and r["test_scoring"]["decoded_texts"] == 0 == r["test_scoring"]["forward_rows"]
               for r in second.values())
    assert {k: r["test_predictions"] for k, r in second.items()} == {k: r["test_predictions"] for k, r in first.items()}
    assert report.main(["--runs", str(out), "--out", str(tmp_path / "board")]) == 0
    board = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "metric BLEU / ROUGE-L" in board and "per-seed paired-bootstrap (BLEU) p-values" in board
    assert "| manual-1shot | gen | " in board
    against_demos = board[board.index("Against `manual-1shot`"):board.index("Prompts found")]
    assert "| manual | gen | " in against_demos and "| manual-1shot | gen | " not in against_demos


def test_cache_keys_follow_content_and_entries_round_trip(tmp_path: Path, tiny_causal_lm) -> None:
    task = load_demo("sentiment")
    test, train = task.split("test"), task.split("train")
    evaluator = Evaluator(tiny_causal_lm)
    prompt = Prompt.build(SENTIMENT, WORDS)
    key = cache_key(evaluator, prompt, test, task)
    assert key == cache_key(Evaluator(tiny_causal_lm, batch_tokens=64), prompt, test, task)  # batching only
    assert key != cache_key(evaluator, Prompt.build(SENTIMENT, {"negative": "no", "positive": "yes"}), test, task)
    assert key != cache_key(evaluator, prompt, test[:-1], task)
    calibrated = Evaluator(tiny_causal_lm, calibration="contextual")
    assert key != cache_key(calibrated, prompt, test, task)
    fitted = calibrated.resolved(prompt, task)
    assert fitted.calibration.fitted and cache_key(calibrated, fitted, test, task) == cache_key(
        calibrated, prompt, test, task)  # p_cf is a function of the rest
    demos = Evaluator(tiny_causal_lm, demos=Demonstrations(k=1))
    assert cache_key(demos, prompt, test, task, train) != cache_key(demos, prompt, test, task, train[1:])
    assert cache_key(evaluator, prompt, test, task, train) == cache_key(evaluator, prompt, test, task, train[1:])
    soft = Prompt.build("[V*2]" + SENTIMENT, WORDS, soft=torch.zeros(2, tiny_causal_lm.hidden_size))
    nudged = replace(soft, soft=soft.soft + 1e-3)
    assert cache_key(evaluator, soft, test, task) != cache_key(evaluator, nudged, test, task)

    cache = ScoreCache(tmp_path / "cache")
    table, hit = cache.score(calibrated, prompt, test, task)
    again, hit_again = cache.score(calibrated, fitted, test, task)
    assert (hit, hit_again) == (False, True) and cache.stats.hits == 1 and cache.stats.forward_rows > 0
    np.testing.assert_array_equal(again.scores, table.scores)
    np.testing.assert_array_equal(again.p_cf, table.p_cf)
    assert again.metrics(0) == table.metrics(0)
    facts = load_demo("capitals")
    fact_table, _ = cache.score(evaluator, Prompt.build("The capital of {sub_label} is[P]"), facts.split("test"), facts)
    fact_again, _ = cache.score(evaluator, Prompt.build("The capital of {sub_label} is[P]"), facts.split("test"), facts)
    np.testing.assert_array_equal(fact_again.rank, fact_table.rank)
    assert fact_again.metrics(0) == fact_table.metrics(0)
    entry = next((tmp_path / "cache").glob("*/*.npz"))
    entry.write_bytes(entry.read_bytes()[:40])  # a torn entry is a miss, and is rewritten
    fresh = ScoreCache(tmp_path / "cache")
    for _ in range(2):
        for p, ev, t in ((prompt, calibrated, task), (Prompt.build("The capital of {sub_label} is[P]"), evaluator,
                                                      facts)):
            fresh.score(ev, p, t.split("test"), t)
    assert (fresh.stats.hits, fresh.stats.misses) == (3, 1)


def test_two_workers_share_the_cache(tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """Seeds 1 and 2 end on the same prompt and run at once: both write the same entry atomically."""
    args = [str(_suite(tmp_path, tiny_model_dir)), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c")]
    assert run.main([*args, "--jobs", "2"]) == 0
    assert all(r["status"] == "ok" for r in _records(tmp_path / "out" / "tiny").values())
    for path in (tmp_path / "out" / "tiny").glob("*.json"):
        path.unlink()
    capsys.readouterr()
    assert run.main(args) == 0  # in this process: every entry the two workers wrote reads back
    assert "0 misses (hit rate 100 %), 0 forward rows" in capsys.readouterr().err


# --- suites: variants, filters, staleness -------------------------------------------------------
def test_variants_inherit_from_their_base_and_add_evaluator_options(tmp_path: Path) -> None:
    path = _suite(tmp_path, tmp_path, **{
        "manual+calib": {"base": "manual", "tasks": ["sentiment"], "evaluator": {"calibration": "contextual"}},
        "manual+calib+demos": {"base": "manual+calib", "evaluator": {"demos": {"k": 1}},
                               "config": {"per_step": 2}},
        "label-search": {"base": "manual", "tasks": ["sentiment"], "config": {"top_k": 3}},
    })
    suite = load_suite(path)
    jobs = {(job.searcher, job.task_name, job.seed): job for job in suite.jobs}
    assert len(suite.jobs) == 2 * 2 + 3 * 2
    variant = jobs["manual+calib+demos", "sentiment", 1]
    assert variant.method == "manual" and variant.budget == {"iterations": 3}
    assert variant.evaluator == {"calibration": "contextual", "demos": {"k": 1}}
    assert variant.config == {"templates": ["$template", "$other", "$third"], "verbalizers": ["$verbalizer"],
                              "per_step": 2}
    assert jobs["label-search", "sentiment", 1].method == "label-search"  # a registered key runs itself
    with pytest.raises(SuiteError, match="Evaluator options"):
        load_suite(_suite(tmp_path, tmp_path, x={"base": "manual", "evaluator": {"calibrate": True}}))
    with pytest.raises(SuiteError, match="another entry"):
        load_suite(_suite(tmp_path, tmp_path, x={"base": "x"}))
    with pytest.raises(SuiteError, match="unknown searcher"):
        load_suite(_suite(tmp_path, tmp_path, x={"budget": {"iterations": 1}}))


def test_filters_select_jobs_and_name_what_matched_nothing(tmp_path: Path, tiny_model_dir: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    suite = _suite(tmp_path, tiny_model_dir, **{"manual+calib": {"base": "manual", "tasks": ["sentiment"],
                                                                 "evaluator": {"calibration": "contextual"}}})
    out = tmp_path / "out"
    assert run.main([str(suite), "--out", str(out), "--searchers", "manual+*", "--seeds", "2"]) == 0
    assert sorted(_records(out / "tiny")) == ["sentiment__manual+calib__seed2"]
    record = _records(out / "tiny")["sentiment__manual+calib__seed2"]
    assert record["method"] == "manual" and record["result"]["prompt"]["calibration"]["p_cf"]
    assert run.main([str(suite), "--out", str(out), "--tasks", "nope"]) == 2
    assert "--tasks nope matches none" in capsys.readouterr().err


def test_a_record_of_a_changed_job_runs_again(tmp_path: Path, tiny_model_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    assert run.main([str(_suite(tmp_path, tiny_model_dir)), "--out", str(out), "--seeds", "1"]) == 0
    calls: list[str] = []
    monkeypatch.setattr(run, "execute", lambda job, *a: calls.append(job.id) or _fake_record(job))
    spec = yaml.safe_load((tmp_path / "tiny.yaml").read_text())
    spec["tasks"][0]["unused"] = "a variable no config refers to"  # does not change any job
    spec["tasks"][1]["other"] = "{sub_label} has the capital[P]"  # changes the capitals job
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    assert run.main([str(tmp_path / "tiny.yaml"), "--out", str(out), "--seeds", "1"]) == 0
    assert calls == ["capitals__manual__seed1"]


def test_the_report_compares_with_a_row_the_suite_file_names_after_the_records(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = _suite(tmp_path, tiny_model_dir, other={"base": "manual", "config": {"templates": ["$other"]}})
    out, board = tmp_path / "out", tmp_path / "board"
    assert run.main([str(suite), "--out", str(out), "--tasks", "sentiment", "--seeds", "1"]) == 0
    monkeypatch.setattr(report, "SUITES_DIR", tmp_path / "suites")  # no file of that name: the records only
    assert report.main(["--runs", str(out), "--out", str(board)]) == 0
    assert "Against `other`" not in (board / "LEADERBOARD.md").read_text()
    spec = yaml.safe_load(suite.read_text())
    spec["searchers"]["never-run"] = spec["searchers"]["other"]  # a row of the suite with no records
    spec["also_against"] = ["other", "never-run"]  # added after the run: no job changes, so none re-runs
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "tiny.yaml").write_text(yaml.safe_dump(spec))
    assert report.main(["--runs", str(out), "--out", str(board)]) == 0
    text = (board / "LEADERBOARD.md").read_text()
    assert "| manual | sentiment | " in text[text.index("Against `other`"):] and "never-run" not in text


# --- progress and parallelism -------------------------------------------------------------------
def _fake_record(job, *args) -> dict:
    return {"suite": job.suite, "job_id": job.id, "task": job.task_name, "task_index": job.task_index,
            "searcher": job.searcher, "seed": job.seed, "model": job.model, "baseline": job.baseline,
            "job": asdict(job), "status": "ok", "test_score": 0.5, "seconds": {"total": 0.1},
            "test_scoring": {"hits": 1, "misses": 0, "forward_rows": 0}}


def test_progress_shows_done_remaining_and_eta(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(run, "execute", _fake_record)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    out = tmp_path / "out"
    assert run.main([str(_suite(tmp_path, tiny_model_dir)), "--out", str(out), "--only", "sentiment*"]) == 0
    printed = capsys.readouterr()
    assert "done 1/2, 1 remaining, ETA 00:00:0" in printed.out and "done 2/2, 0 remaining" in printed.out
    assert run.main([str(_suite(tmp_path, tiny_model_dir)), "--out", str(out), "--jobs", "3"]) == 0
    printed = capsys.readouterr()
    assert "warning: --jobs 3 on 2 core(s)" in printed.err and "tiny: 4 jobs, 2 already finished" in printed.err


def _dies_once(folder: Path, victim: str, job, *args) -> dict:
    """A Dask task that kills its own worker process the first time it runs ``victim``."""
    attempts = folder / f"{job.id}.attempts"
    count = int(attempts.read_text()) if attempts.exists() else 0
    attempts.write_text(str(count + 1))
    if job.id == victim and count == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.3)
    return _fake_record(job)


def test_a_killed_dask_worker_loses_no_record(tmp_path: Path, tiny_model_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    distributed = pytest.importorskip("distributed")
    victim = "capitals__manual__seed1"
    monkeypatch.setattr(run, "execute", functools.partial(_dies_once, tmp_path, victim))
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=50) as cluster:
        code = run.main([str(_suite(tmp_path, tiny_model_dir)), "--out", str(out), "--backend", "dask",
                         "--scheduler", cluster.scheduler_address])
    assert code == 0
    records = _records(out / "tiny")
    assert len(records) == 4 and all(r["status"] == "ok" for r in records.values())
    assert (tmp_path / f"{victim}.attempts").read_text() == "2"  # killed once, re-run elsewhere


# --- checkpoints and time to quality ------------------------------------------------------------
def test_an_ensemble_is_cached_as_its_members(tmp_path: Path, tiny_causal_lm) -> None:
    """auto and ensemble: k return an EnsemblePrompt; its test scores come from its members' entries,
    so a member scored alone (the manual row) or in another ensemble is not scored again."""
    task = load_demo("sentiment")
    test = task.split("test")
    evaluator = Evaluator(tiny_causal_lm)
    first, second = Prompt.build(SENTIMENT, WORDS), Prompt.build("{sentence} All in all, it was[P]", WORDS)
    third = Prompt.build("Review: {sentence} It was[P]", WORDS)
    cache = ScoreCache(tmp_path / "cache")
    cache.score(evaluator, first, test, task)  # the baseline row, scored alone
    ensemble = EnsemblePrompt((first, second), labels=task.labels)
    table, hit = cache.score(evaluator, ensemble, test, task)
    assert not hit and (cache.stats.hits, cache.stats.misses, cache.stats.forward_rows) == (1, 2, 2 * len(test))
    np.testing.assert_allclose(table.scores, evaluator.score([ensemble], test, task).scores, atol=1e-5)
    logistic = EnsemblePrompt((second, first, third), "logistic", (1.0, 0.5, 0.2), (0.0, 0.1), task.labels)
    table, hit = cache.score(evaluator, logistic, test, task)  # only the new member is scored
    assert not hit and cache.stats.forward_rows == 3 * len(test)
    np.testing.assert_allclose(table.scores, evaluator.score([logistic], test, task).scores, atol=1e-5)
    again, hit = cache.score(evaluator, logistic, test, task)
    assert hit and cache.stats.forward_rows == 3 * len(test)
    np.testing.assert_array_equal(again.scores, table.scores)


def test_a_snapshot_of_an_ensemble_copies_its_members_tensors(tiny_causal_lm) -> None:
    soft = Prompt.build("[V*2]" + SENTIMENT, WORDS, soft=torch.zeros(2, tiny_causal_lm.hidden_size))
    ensemble = EnsemblePrompt((soft, Prompt.build(SENTIMENT, WORDS)), labels=("negative", "positive"))
    copy = frozen_copy(ensemble)
    soft.soft.add_(1.0)  # training goes on in place
    assert float(copy.members[0].soft.abs().sum()) == 0.0 and copy.members[1] == ensemble.members[1]


def test_incumbents_give_the_prompt_in_force_at_each_fraction() -> None:
    prompts = [Prompt.build(f"{i} {{sentence}}[P]", WORDS) for i in range(3)]
    incumbents = Incumbents(searcher=None)
    incumbents.snapshots = [Snapshot(1, 1.0, 10, prompts[0]), Snapshot(4, 5.0, 40, prompts[1]),
                            Snapshot(9, 9.0, 90, prompts[2])]
    history = [type("Step", (), {"seconds": 10.0})()]
    chosen = incumbents.at((0.05, 0.3, 0.5, 0.95), history)
    assert [(f, s.step) for f, s in chosen] == [(0.3, 1), (0.5, 4), (0.95, 9)]


def test_mean_quality_curve_starts_when_every_seed_has_a_prompt() -> None:
    xs, ys = plots.mean_quality_curve([[(1.0, 50.0), (4.0, 70.0)], [(2.0, 60.0), (3.0, 80.0)]])
    assert xs == [2.0, 3.0, 4.0] and ys == [55.0, 65.0, 75.0]
    record = {"result": {"history": [{"seconds": 8.0}]}, "seconds": {"search": 9.0}, "test_score": 0.75,
              "checkpoints": [{"seconds": 1.0, "test_score": 0.5}]}
    assert plots.quality_curve(record) == [(1.0, 50.0), (8.0, 75.0)]


# --- data settings ------------------------------------------------------------------------------
def test_full_sentences_are_the_rows_no_other_row_contains() -> None:
    rows = ("a fine film .", "fine film", "a fine", "dull", "the plot is dull .", "a fine film .", "film")
    assert full_sentences(rows) == [0, 4]


def test_a_carry_over_task_searches_one_data_set_and_tests_on_another() -> None:
    def no_data_dir() -> Path:
        raise AssertionError("demo tasks need no data directory")

    entry = {"name": "transfer", "data": {"demo": "sentiment", "limit": {"test": 2},
                                          "test_from": {"demo": "sentiment", "limit": {"test": 5}}}}
    task, _ = load_benchmark_task(entry, 1, no_data_dir)
    own, _ = load_benchmark_task({"name": "own", "data": {"demo": "sentiment"}}, 1, no_data_dir)
    assert list(task.split("test")) == list(own.split("test"))[:5] and task.split("train") == own.split("train")
    mismatch = {"name": "bad", "data": {"demo": "sentiment", "test_from": {"demo": "capitals"}}}
    with pytest.raises(SuiteError, match="same ones"):
        load_benchmark_task(mismatch, 1, no_data_dir)


def test_lama_variables_turn_the_relation_phrase_into_slots() -> None:
    variables = lama_variables("The capital of {sub_label} is[P]")
    assert variables["trigger_template"] == "The capital of {sub_label}[T*1][P]"
    assert variables["soft_template"] == "The capital of {sub_label}[V*1][P]" and variables["soft_init"] == "text: is"
    assert lama_variables("{sub_label} was born in[P]")["trigger_init"] == " was born in"
    assert lama_variables("{sub_label}[P]")["soft_init"] == "vocab"
    with pytest.raises(SuiteError, match="sub_label"):
        lama_variables("{x} is[P]")


def test_commit_puts_each_record_in_its_own_commit(tmp_path: Path, tiny_model_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "other.txt").write_text("staged, not a result")
    subprocess.run([*git, "add", "other.txt"], check=True)
    monkeypatch.setattr(run, "execute", _fake_record)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@t")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@t")
    assert run.main([str(_suite(tmp_path, tiny_model_dir)), "--out", str(repo / "runs"), "--commit"]) == 0
    log = subprocess.run([*git, "log", "--format=%s", "--name-only"], capture_output=True, text=True).stdout
    assert log.count("results: tiny ") == 4 and "other.txt" not in log
