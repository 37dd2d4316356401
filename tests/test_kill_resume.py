"""Crash safety: a ``discover`` run SIGKILLed at random moments and restarted with ``--resume`` ends with the
same ``result.json`` as an uninterrupted run, and no file in its run directory is ever left corrupt.

The search runs in a subprocess (the real CLI, a tiny model saved to disk). Importing torch and
transformers and loading the model take several seconds, far longer than the search itself, so each
kill is timed from the search's own progress (its progress bar on stderr, the checkpoint's step count):
a seeded random step, then a seeded random part of a step, so the kills span the real work, steps,
checkpoint writes and the final scoring included, instead of all landing in start-up.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from autoprompt_search.cli import app as cli
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.searchers import ManualSearcher

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = (
    "{sentence} It was[P]",
    r"Review: {sentence}\nSentiment:[P]",
    "{sentence} All in all, it was[P]",
    r"{sentence}\nIn short:[P]",
    r"Text: {sentence}\nAnswer:[P]",
    "{sentence} The movie is[P]",
)
VERBALIZERS = ('{"0":"bad","1":"good"}', '{"0":"terrible","1":"great"}')
STEPS = len(TEMPLATES) * len(VERBALIZERS)  # per_step 1: one candidate per step
KILLS = 4
SEED = 20240607


def write_data(folder: Path) -> Path:
    """train/dev/test tsv files; dev is large enough that a step takes a noticeable fraction of a second."""
    rng = random.Random(0)
    good, bad = ["good", "great", "wonderful", "fun", "best"], ["bad", "terrible", "boring", "sad", "worst"]
    nouns = ["film", "movie", "plot", "cast", "music", "story", "acting", "script", "ending"]
    folder.mkdir(parents=True)
    for split, n in (("train", 40), ("dev", 600), ("test", 200)):
        rows = [f"the {rng.choice(nouns)} was {rng.choice(good if i % 2 else bad)} and the {rng.choice(nouns)} "
                f"is {rng.choice(good + bad)}\t{i % 2}" for i in range(n)]
        (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return folder


def discover_args(model: Path, data: Path, out: Path) -> list[str]:
    args = ["discover", "--model", str(model), "--data", str(data), "--config", '{"per_step": 1}', "--out", str(out)]
    for template in TEMPLATES:
        args += ["--template", template]
    for verbalizer in VERBALIZERS:
        args += ["--verbalizer", verbalizer]
    return args


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """``result.json`` without what legitimately differs between runs: wall-clock seconds."""
    result = json.loads(json.dumps(result))
    for row in result["history"]:
        row.pop("seconds")
    return result


def checkpoint_steps(run: Path) -> int:
    state = run / "checkpoint" / "state.json"
    return json.loads(state.read_text())["steps"] if state.is_file() else 0


def history_lines(run: Path) -> int:
    path = run / "history.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def assert_intact(run: Path) -> None:
    """Every JSON file parses; the history is whole lines only (a torn last line is the one allowed defect)."""
    for path in [*run.rglob("*.json")]:
        json.loads(path.read_text(encoding="utf-8"))
    lines = (run / "history.jsonl").read_text().splitlines() if (run / "history.jsonl").is_file() else []
    for line in lines[:-1]:
        json.loads(line)


@pytest.mark.slow  # 5 subprocesses, each importing torch + transformers: 45-70 s on 2 busy cores
def test_sigkill_at_random_moments_then_resume_gives_the_same_result(
    tmp_path: Path, tiny_causal_lm: LanguageModel, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    tiny_causal_lm.model.save_pretrained(model)
    tiny_causal_lm.tokenizer.save_pretrained(model)
    data = write_data(tmp_path / "data")

    # The uninterrupted reference, in this process, single-threaded like the subprocesses below.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli.main(discover_args(model, data, tmp_path / "reference")) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    reference = json.loads((tmp_path / "reference" / "result.json").read_text())
    assert len(reference["history"]) == STEPS
    per_step = reference["history"][-1]["seconds"] / STEPS

    run = tmp_path / "run"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_VERBOSITY": "error"}
    rng = random.Random(SEED)
    kills: list[dict[str, Any]] = []
    attempts = 0
    while True:
        attempts += 1
        assert attempts <= KILLS + 3, f"the run never finished: {kills}"
        resume = ["--resume"] if attempts > 1 else []
        log = tmp_path / f"stderr-{attempts}.txt"
        before = checkpoint_steps(run)
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "autoprompt_search.cli", *discover_args(model, data, run), *resume],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
            )
            try:
                if len(kills) < KILLS:
                    # A random moment of the work left: wait for the search loop to start (its progress bar)
                    # and for a random number of further steps, then a random part of one step (or of the
                    # final scoring, which takes about 1.5 steps: dev + test with one prompt).
                    target = rng.randint(before, STEPS)
                    delay = rng.uniform(0.0, per_step * (1.5 if target == STEPS else 1.0))
                    deadline = time.monotonic() + 120
                    while process.poll() is None and not (
                        "manual" in log.read_text(errors="replace") and checkpoint_steps(run) >= target
                    ):
                        assert time.monotonic() < deadline, "the search never reached its target step"
                        time.sleep(0.005)
                    time.sleep(delay)
                    if process.poll() is None:
                        process.send_signal(signal.SIGKILL)
                        process.wait()
                        kills.append({"after_step": target, "delay": round(delay, 3), "checkpoint_before": before,
                                      "checkpoint_after": checkpoint_steps(run), "history_lines": history_lines(run),
                                      "finished_before": (run / "result.json").is_file()})
                        assert_intact(run)
                        continue
                code = process.wait(timeout=300)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        assert code == 0, log.read_text()
        break

    result = json.loads((run / "result.json").read_text())
    mid_run = [k for k in kills if not k["finished_before"]]
    torn = [k for k in kills if k["history_lines"] > k["checkpoint_after"]]
    summary = (f"{len(kills)} kills in {attempts} attempts, {len(mid_run)} mid-run "
               f"({len(torn)} between a history line and its checkpoint); "
               f"finish identical to the uninterrupted run: {comparable(result) == comparable(reference)}; {kills}")
    print(summary)
    assert len(kills) >= 1 and len(mid_run) >= 1, summary
    assert comparable(result) == comparable(reference), summary

    # Nothing corrupt, nothing left over, and exactly one history line per step, in order.
    assert_intact(run)
    assert sorted(p.name for p in run.rglob(".*.tmp")) == []
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == list(range(1, STEPS + 1))
    assert [row["step"] for row in result["history"]] == list(range(1, STEPS + 1))
    assert checkpoint_steps(run) == STEPS


# --- the crash windows, made deterministic (in process, fast) ------------------------------------


@pytest.fixture()
def small_setup(tmp_path: Path, tiny_causal_lm: LanguageModel) -> tuple[Path, Path]:
    model = tmp_path / "model"
    tiny_causal_lm.model.save_pretrained(model)
    tiny_causal_lm.tokenizer.save_pretrained(model)
    data = tmp_path / "data"
    data.mkdir()
    for split, sentences in {"train": ["good film", "bad film"], "dev": ["good plot", "bad plot", "good cast"],
                             "test": ["good ending", "bad ending"]}.items():
        rows = [f"{s}\t{int(s.startswith('good'))}" for s in sentences]
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return model, data


def test_kill_between_history_line_and_checkpoint_loses_one_step_only(
    tmp_path: Path, small_setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, data = small_setup
    args = discover_args(model, data, tmp_path / "run")
    assert cli.main(discover_args(model, data, tmp_path / "reference")) == 0
    assert cli.main([*args, "--iterations", "3"]) == 0
    run = tmp_path / "run"
    # What a kill leaves at the worst moments: step 4's history line written but not its checkpoint, a
    # torn half line after it, and the temporary file of an interrupted atomic write.
    lines = (run / "history.jsonl").read_text().splitlines()
    step4 = json.loads(lines[-1]) | {"step": 4}
    with (run / "history.jsonl").open("a") as handle:
        handle.write(json.dumps(step4) + "\n" + json.dumps(step4)[:17])
    (run / "checkpoint" / ".state.json.k1ll3d.tmp").write_text('{"steps": 4, "sec')
    assert cli.main([*args, "--resume"]) == 0
    capsys.readouterr()
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == list(range(1, STEPS + 1))
    assert list(run.rglob(".*.tmp")) == []
    result, reference = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("run", "reference"))
    assert comparable(result) == comparable(reference)


def test_fresh_run_never_resumes_an_earlier_runs_checkpoint(
    tmp_path: Path, small_setup: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, data = small_setup
    run = tmp_path / "run"
    assert cli.main(discover_args(model, data, run)) == 0  # an earlier, finished run in the same --out
    other = discover_args(model, data, run)
    other[other.index("--config") + 1] = '{"per_step": 2}'
    step = ManualSearcher.step

    def killed(self: ManualSearcher, ctx: Any) -> Any:
        raise KeyboardInterrupt  # the new run dies before its first checkpoint

    monkeypatch.setattr(ManualSearcher, "step", killed)
    assert cli.main(other) == 130
    assert not (run / "checkpoint").exists() and not (run / "result.json").exists()
    monkeypatch.setattr(ManualSearcher, "step", step)
    assert cli.main([*other, "--resume"]) == 0  # starts the new run afresh: 6 steps of 2, not the old 12
    capsys.readouterr()
    result = json.loads((run / "result.json").read_text())
    assert result["config"]["per_step"] == 2 and len(result["history"]) == STEPS // 2
