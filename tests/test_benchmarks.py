"""The leaderboard machinery: suites, the resumable runner, statistics and the report.

Jobs run on the tiny random causal LM (saved to a folder, so any worker process can load it) and
the demo tasks shipped in the package: no real model, no benchmark data.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from autoprompt_search import SEARCHERS, load_demo
from benchmarks import report, run
from benchmarks.jobs import execute
from benchmarks.plots import searcher_colours
from benchmarks.stats import bootstrap_ci, compare, mcnemar_exact, mean_std, paired_bootstrap_bleu
from benchmarks.suite import SUITES_DIR, SuiteError, load_suite, resolve_config

SEEDS = [1, 2]


def _suite(folder: Path, model: Path, *, sentiment_template: str = "Review: {sentence}\nSentiment:[P]") -> Path:
    spec = {
        "model": str(model), "seeds": SEEDS, "baseline": "manual",
        "tasks": [
            {"name": "sentiment", "data": {"demo": "sentiment"}, "template": sentiment_template,
             "verbalizer": {"negative": "bad", "positive": "good"}},
            {"name": "capitals", "data": {"demo": "capitals", "limit": 10},
             "template": "The capital of {sub_label} is[P]", "verbalizer": None},
        ],
        "searchers": {"manual": {"budget": {"iterations": 1},
                                 "config": {"templates": ["$template"], "verbalizers": ["$verbalizer"]}}},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's score cache."""
    monkeypatch.setenv("AUTOPROMPT_SEARCH_CACHE", str(tmp_path / "user-cache"))


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Job ids the runner executes (jobs=1 runs them in this process)."""
    calls: list[str] = []

    def counting(job, *args):
        calls.append(job.id)
        return execute(job, *args)

    monkeypatch.setattr(run, "execute", counting)
    return calls


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """One finished run of the tiny suite (4 jobs), shared by the tests that only read records."""
    folder = tmp_path_factory.mktemp("runs")
    args = [str(_suite(folder, tiny_model_dir)), "--out", str(folder / "out"), "--cache", str(folder / "cache")]
    assert run.main(args) == 0
    return folder / "out"


# --- suites -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(SUITES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_suite_expands(path: Path) -> None:
    suite = load_suite(path)
    tasks = {job.task_name for job in suite.jobs}
    seeds = {job.seed for job in suite.jobs}
    assert {job.task_name for job in suite.jobs if job.searcher == suite.baseline} == tasks
    assert len([job for job in suite.jobs if job.searcher == suite.baseline]) == len(tasks) * len(seeds)
    assert len({job.id for job in suite.jobs}) == len(suite.jobs)
    assert suite.baseline == "manual" and all(job.baseline == "manual" for job in suite.jobs)


def test_smoke_suite_runs_every_registered_searcher() -> None:
    """CI runs the smoke suite: a new searcher must add its entry there."""
    assert {job.searcher_class for job in load_suite("smoke").jobs} == set(SEARCHERS)


def test_suites_follow_the_protocols() -> None:
    lmbff_seeds = {13, 21, 42, 87, 100}
    sst2 = load_suite("sst2-16shot")
    assert {job.searcher_class for job in sst2.jobs} == set(SEARCHERS)  # every registered searcher
    for row in sst2.searchers:
        assert {job.seed for job in sst2.jobs if job.searcher == row} == lmbff_seeds
    manual = next(job for job in sst2.jobs if job.searcher == "manual")
    assert manual.task["template"] == "Review: {sentence}\nSentiment:[P]"
    assert manual.task["verbalizer"] == {"0": "negative", "1": "positive"}
    single = load_suite("lmbff-single")
    assert {job.task_name for job in single.jobs} == {"SST-2", "sst-5", "mr", "cr", "mpqa", "subj", "trec"}
    for row in ("manual", "manual+calib", "manual-instruct", "manual-instruct+calib", "filter", "filter+calib",
                "prompt-tuning"):
        assert len({job.task_name for job in single.jobs if job.searcher == row}) == 7, row
    assert {job.seed for job in single.jobs} == lmbff_seeds
    lama = load_suite("lama")
    assert len({job.task_name for job in lama.jobs}) >= 10
    assert {job.searcher_class for job in lama.jobs} == {"manual", "autoprompt", "p-tuning"}
    full = load_suite("sst2-full")
    assert {job.seed for job in full.jobs} == lmbff_seeds and full.jobs[0].task["data"] == {"sst2_full": 200}


def test_pending_jobs_start_each_row_before_a_second_seed_of_any() -> None:
    jobs = [job for job in load_suite(SUITES_DIR / "lmbff-single.yaml").jobs
            if job.searcher in ("manual", "manual+calib") and job.task["name"] in ("mr", "cr")]
    ordered = run.cache_friendly_order(jobs)
    assert sorted(j.id for j in ordered) == sorted(j.id for j in jobs)
    assert [j.seed for j in ordered[:4]] == [13] * 4 and [j.seed for j in ordered[4:8]] == [21] * 4
    assert [(j.task["name"], j.searcher) for j in ordered[:4]] == [
        ("mr", "manual"), ("mr", "manual+calib"), ("cr", "manual"), ("cr", "manual+calib")]


def test_config_variables_are_resolved() -> None:
    config = {"templates": ["$template"], "verbalizers": ["$verbalizer"], "per_step": 2, "note": "a $b"}
    resolved = resolve_config(config, {"template": "{x}[P]", "verbalizer": {"0": "no"}})
    assert resolved == {"templates": ["{x}[P]"], "verbalizers": [{"0": "no"}], "per_step": 2, "note": "a $b"}
    with pytest.raises(SuiteError, match=r"\$missing"):
        resolve_config(["$missing"], {"template": "t"})


@pytest.mark.parametrize("change, message", [
    ({"searchers": {"nope": {"budget": {"iterations": 1}}}}, "unknown searcher"),
    ({"searchers": {"manual": {"budget": {"steps": 1}}}}, "budget"),
    ({"seeds": [1, 1]}, "distinct"),
    ({"baseline": "other"}, "baseline"),
    ({"also_against": ["other"]}, "also_against"),
    ({"also_against": ["manual"]}, "also_against"),  # the baseline is compared with already
    ({"searchers": {"manual": {"budget": {"iterations": 1}, "tasks": ["x"]}}}, "task names"),
    ({"tasks": [{"name": "a__b", "data": {"demo": "sentiment"}}]}, "task name"),
])
def test_bad_suites_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    spec = {"model": "m", "seeds": [1], "tasks": [{"name": "t", "data": {"demo": "sentiment"}}],
            "searchers": {"manual": {"budget": {"iterations": 1}}}, **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(SuiteError, match=message):
        load_suite(path)


# --- runner -------------------------------------------------------------------------------------
def test_records_hold_result_predictions_and_environment(tiny_runs: Path) -> None:
    records = {p.stem: json.loads(p.read_text()) for p in sorted((tiny_runs / "tiny").glob("*.json"))}
    assert sorted(records) == [f"{t}__manual__seed{s}" for t in ("capitals", "sentiment") for s in SEEDS]
    sentiment = records["sentiment__manual__seed1"]
    assert sentiment["status"] == "ok" and sentiment["metric"] == "accuracy"
    predictions = sentiment["test_predictions"]
    assert len(predictions["pred"]) == len(load_demo("sentiment").split("test"))
    assert np.mean(np.array(predictions["pred"]) == predictions["gold"]) == pytest.approx(sentiment["test_score"])
    assert sentiment["result"]["test_metrics"]["accuracy"] == sentiment["test_score"]
    assert sentiment["result"]["config"]["templates"] == ["Review: {sentence}\nSentiment:[P]"]
    assert {"torch", "dtype", "cpu"} <= set(sentiment["environment"]) and sentiment["seconds"]["total"] > 0
    capitals = records["capitals__manual__seed2"]
    assert capitals["metric"] == "p_at_1" and len(capitals["test_predictions"]["rank"]) == 10  # limit: 10
    assert np.mean(capitals["test_predictions"]["correct"]) == pytest.approx(capitals["test_score"])
    assert capitals["test_cached"]  # seed 2 ends on the same prompt: its test table is reused


def test_resume_skips_finished_jobs_after_a_kill(tmp_path: Path, tiny_model_dir: Path, counted: list[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    suite, out = _suite(tmp_path, tiny_model_dir), tmp_path / "out"

    def killed_on_third_job(job, *args):
        if len(counted) == 2:
            raise KeyboardInterrupt  # the run dies mid-suite, as on Ctrl-C or a kill
        counted.append(job.id)
        return execute(job, *args)

    with monkeypatch.context() as patch:
        patch.setattr(run, "execute", killed_on_third_job)
        with pytest.raises(KeyboardInterrupt):
            run.main([str(suite), "--out", str(out)])
    assert len(list((out / "tiny").glob("*.json"))) == 2
    first = list(counted)
    counted.clear()
    assert run.main([str(suite), "--out", str(out)]) == 0
    assert len(counted) == 2 and not set(counted) & set(first)
    counted.clear()
    assert run.main([str(suite), "--out", str(out)]) == 0
    assert counted == []  # a complete run re-executes nothing


def test_a_failing_job_is_recorded_and_fails_the_run(tmp_path: Path, tiny_model_dir: Path, counted: list[str]) -> None:
    suite = _suite(tmp_path, tiny_model_dir, sentiment_template="{no_such_field}[P]")
    out = tmp_path / "out"
    assert run.main([str(suite), "--out", str(out), "--only", "*__seed1"]) == 1
    error = json.loads((out / "tiny" / "sentiment__manual__seed1.json").read_text())
    assert error["status"] == "error" and "no_such_field" in error["error"]["message"]
    assert json.loads((out / "tiny" / "capitals__manual__seed1.json").read_text())["status"] == "ok"
    counted.clear()
    assert run.main([str(suite), "--out", str(out), "--only", "*__seed1"]) == 1
    assert counted == ["sentiment__manual__seed1"]  # failed jobs are retried, finished ones are not
    assert run.main([str(suite), "--out", str(out), "--only", "typo*"]) == 2


def test_dask_backend_on_a_local_cluster(tmp_path: Path, tiny_model_dir: Path) -> None:
    distributed = pytest.importorskip("distributed")
    suite, out = _suite(tmp_path, tiny_model_dir), tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        code = run.main([str(suite), "--out", str(out), "--backend", "dask", "--scheduler", cluster.scheduler_address])
    assert code == 0
    records = [json.loads(p.read_text()) for p in (out / "tiny").glob("*.json")]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)


# --- statistics ---------------------------------------------------------------------------------
def test_mcnemar_exact_matches_hand_computed_values() -> None:
    base = [True] * 10 + [True, False, False, False, False, False]
    other = [True] * 10 + [False, True, True, True, True, True]
    test = mcnemar_exact(base, other)
    # 1 vs 5 discordant: p = 2 * P(X <= 1 | n=6, 1/2) = 2 * 7/64
    assert (test.baseline_only, test.other_only) == (1, 5) and test.p_value == pytest.approx(14 / 64)
    assert mcnemar_exact([False] * 6, [True] * 6).p_value == pytest.approx(2 / 64)
    assert mcnemar_exact([True, False], [True, False]).p_value == 1.0
    assert mcnemar_exact([True, False, True], [False, True, True]).p_value == 1.0  # 1 vs 1


def test_bootstrap_and_comparison() -> None:
    assert mean_std([0.5, 0.7]) == pytest.approx((0.6, 0.1))
    assert bootstrap_ci([0.02, 0.02, 0.02]) == pytest.approx((0.02, 0.02))
    low, high = bootstrap_ci([0.01, 0.03, 0.05, 0.02, 0.04])
    assert 0.01 <= low < 0.03 < high <= 0.05 and bootstrap_ci([0.01, 0.03, 0.05, 0.02, 0.04]) == (low, high)
    gold = np.ones(40, dtype=bool)
    worse = gold.copy()
    worse[:12] = False  # the baseline misses 12 examples the other searcher gets right
    baseline = {s: (float(worse.mean()), worse) for s in (1, 2, 3)}
    other = {s: (1.0, gold) for s in (1, 2)} | {3: (float(worse.mean()), worse)}
    comparison = compare(baseline, other)
    assert comparison.seeds == (1, 2, 3) and comparison.wins == 2 and comparison.significant_wins == 2
    assert comparison.mean_delta == pytest.approx(0.2) and comparison.ci_low == pytest.approx(0.0)
    assert comparison.mark == ""  # the CI touches 0: not a consistent gain
    assert compare(baseline, {s: (1.0, gold) for s in (1, 2, 3)}).mark == "▲"
    assert compare(baseline, {7: (1.0, gold)}) is None


def test_paired_bootstrap_of_corpus_bleu() -> None:
    from autoprompt_search.scoring.text_metrics import bleu_statistics

    refs = [["the cat sat on the mat"], ["a dog runs in the park"], ["we ate fish at noon"]] * 10
    good = bleu_statistics([r[0] for r in refs], refs)
    poor = bleu_statistics(["the dog sat in a park"] * len(refs), refs)
    same = paired_bootstrap_bleu(good, good)
    assert same.delta == 0 and same.p_value == 1.0
    better = paired_bootstrap_bleu(poor, good)
    assert better.delta > 50 and better.p_value < 0.01
    assert paired_bootstrap_bleu(poor, good) == better  # deterministic
    with pytest.raises(ValueError, match="same inputs"):
        paired_bootstrap_bleu(good, good[:-1])


# --- report -------------------------------------------------------------------------------------
def test_report_is_byte_identical_when_regenerated(tiny_runs: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs, runs)
    for path in sorted((runs / "tiny").glob("sentiment__manual__*.json")):  # a second, better searcher
        record = json.loads(path.read_text())
        n = len(record["test_predictions"]["gold"])
        record.update(searcher="better", job_id=record["job_id"].replace("manual", "better"), test_score=1.0,
                      test_predictions={"pred": record["test_predictions"]["gold"],
                                        "gold": record["test_predictions"]["gold"], "correct": [1] * n})
        (path.parent / f"{record['job_id']}.json").write_text(json.dumps(record))
    args = ["--runs", str(runs), "--out", str(tmp_path / "out")]
    assert report.main(args) == 0
    first = (tmp_path / "out" / "LEADERBOARD.md").read_bytes()
    pngs = {p.name: p.read_bytes() for p in (tmp_path / "out").glob("*.png")}
    assert report.main(args) == 0
    assert (tmp_path / "out" / "LEADERBOARD.md").read_bytes() == first
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").glob("*.png")} == pngs
    text = first.decode()
    assert f"Regenerate: `python -m benchmarks.report --runs {runs} --out {tmp_path / 'out'}`" in text
    assert "| manual (baseline) |" in text and "| better |" in text and "0 trigger ids" in text
    assert "| better | sentiment | +" in text  # the delta table against the baseline
    selection = text[text.index("Selection scores"):]
    assert "| searcher | task | selection split | seeds | accuracy | p_at_1 | class_logprob |" in selection
    assert "| manual | sentiment | dev | 2 | " in selection  # what the search saw, beside the test cells
    assert sorted(pngs) == ["tiny-curves-forward.png", "tiny-curves-seconds.png", "tiny-scores.png",
                            "tiny-time-to-quality.png"]
    summary = text[text.index("## Which searcher should I use?"):text.index("## tiny")]
    assert "| tiny | sentiment | `better` | 100.0 ± 0.0 | +" in summary  # best row, its delta over manual
    assert "| tiny | capitals | `manual` | " in summary and "– (the baseline)" in summary


def test_report_names_records_whose_suite_entry_changed_since_they_ran(
        tiny_runs: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suites, args = tmp_path / "suites", ["--runs", str(tiny_runs), "--out", str(tmp_path / "out")]
    suites.mkdir()
    monkeypatch.setattr(report, "SUITES_DIR", suites)
    _suite(suites, tiny_model_dir)  # the suite file as the records ran it
    assert report.main(args) == 0
    assert "Stale records" not in (tmp_path / "out" / "LEADERBOARD.md").read_text()
    _suite(suites, tiny_model_dir, sentiment_template="Text: {sentence}\nLabel:[P]")  # the manual row's template
    assert report.main(args) == 0
    text = (tmp_path / "out" / "LEADERBOARD.md").read_text()
    assert "**Stale records** (row and count): `manual` (2) ran a job that" in text  # sentiment, both seeds


def test_report_shows_each_rows_settings_as_its_records_ran_them(tiny_runs: Path, tmp_path: Path) -> None:
    """Budgets and configs come from the records, so a trimmed budget is visible beside its scores."""
    assert report.main(["--runs", str(tiny_runs), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "LEADERBOARD.md").read_text()
    settings = text[text.index("Row settings as run"):]
    assert ('| manual | `manual` | `{"iterations": 1}` | `{}` | '
            '`{"templates": ["$template"], "verbalizers": ["$verbalizer"]}` |') in settings


def test_report_renders_the_speed_benchmarks_records(tiny_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "perf").mkdir(parents=True)
    (out / "perf" / "generate.json").write_text(json.dumps(
        {"speedup": 4.29, "identical_texts": 32, "examples": 32, "environment": {"threads": 1}}))
    assert report.main(["--runs", str(tiny_runs), "--out", str(out)]) == 0
    speed = (out / "LEADERBOARD.md").read_text()
    speed = speed[speed.index("## Speed and memory"):]
    assert "| generate | batched greedy generation" in speed and "| 4.3x, identical texts 32/32 | 1 |" in speed
    assert "`python -m benchmarks.perf_generate`" in speed
    (out / "perf" / "new-benchmark.json").write_text("{}")
    with pytest.raises(ValueError, match=r"no headline rule.*PERF_RECORDS"):
        report.main(["--runs", str(tiny_runs), "--out", str(out)])


def test_plan_prices_the_open_jobs_by_finished_records_and_runs_nothing(tmp_path: Path, tiny_model_dir: Path,
                                                                        counted: list[str],
                                                                        capsys: pytest.CaptureFixture) -> None:
    """A job is priced by its row's records on its task, else on any task; a row that never ran is
    left unpriced rather than guessed."""
    path = _suite(tmp_path, tiny_model_dir)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec["searchers"]["manual-again"] = {"base": "manual"}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    jobs = {job.id: job for job in load_suite(str(path)).jobs}
    folder = tmp_path / "out" / "tiny"
    folder.mkdir(parents=True)
    for job_id, seconds in (("sentiment__manual__seed1", 3600.0), ("capitals__manual__seed1", 7200.0),
                            ("capitals__manual__seed2", 10800.0)):
        record = {"status": "ok", "job": asdict(jobs[job_id]), "seconds": {"total": seconds}}
        (folder / f"{job_id}.json").write_text(json.dumps(record), encoding="utf-8")
    assert run.main([str(path), "--out", str(tmp_path / "out"), "--plan", "--jobs", "2"]) == 0
    printed = capsys.readouterr().out
    # the one open manual job (sentiment, seed 2) costs what sentiment's record took: 1 h
    assert "| manual | 3/4 | 1 | 7200 (3) | 1.00 |" in printed
    assert "| manual-again | 0/4 | 4 | – (never ran) | ? |" in printed
    assert "5 open job(s): about 1.00 worker-hours, 0.50 h of wall-clock with --jobs 2, plus 4 job(s)" in printed
    assert counted == []


def test_every_row_of_a_large_suite_gets_its_own_colour() -> None:
    """sst2-16shot has 22 rows: matplotlib's 10-colour cycle would give three rows one colour."""
    for count in (3, 10, 22, 40):
        colours = searcher_colours([f"row{i}" for i in range(count)])
        assert len({str(c) for c in colours.values()}) == count
