"""The command line on a tiny model saved to disk: evaluate, discover, resume and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoprompt_search.cli import main

TEMPLATE = r"Review: {sentence}\nSentiment:[P]"
VERBALIZER = '{"0":"bad","1":"good"}'


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    rows = {"train": ["good film", "bad film", "good plot", "bad plot"], "dev": ["good acting", "bad acting"],
            "test": ["good ending", "bad ending", "good music"]}
    for split, sentences in rows.items():
        lines = ["sentence\tlabel"] + [f"{s}\t{int(s.startswith('good'))}" for s in sentences]
        (tmp_path / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_evaluate_writes_metrics(tiny_model_dir, data_dir, tmp_path, capsys) -> None:
    out = tmp_path / "m.json"
    code = main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data_dir / "test.tsv"),
                 "--template", TEMPLATE, "--verbalizer", VERBALIZER, "--output-json", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 3 and 0 <= metrics["accuracy"] <= 1 and metrics["split"] == "test"
    assert metrics["template"] == "Review: {sentence}\nSentiment:[P]"
    assert json.loads(capsys.readouterr().out) == metrics


def test_discover_then_evaluate_saved_prompt(tiny_model_dir, data_dir, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    code = main(["discover", "--model", str(tiny_model_dir), "--data", str(data_dir), "--template", TEMPLATE,
                 "--template", r"{sentence} It was[P]", "--verbalizer", VERBALIZER, "--out", str(run)])
    assert code == 0
    assert "best prompt:" in capsys.readouterr().out
    result = json.loads((run / "result.json").read_text())
    assert result["searcher"] == "auto" and result["selection_split"] == "train+dev"  # the default searcher
    assert result["test_metrics"]["n"] == 3
    code = main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data_dir),
                 "--prompt", str(run / "prompt.json"), "--output-json", str(tmp_path / "again.json")])
    assert code == 0
    assert json.loads((tmp_path / "again.json").read_text())["accuracy"] == result["test_metrics"]["accuracy"]


def test_discover_resume_finishes_the_run(tiny_model_dir, data_dir, tmp_path) -> None:
    run = tmp_path / "run"
    args = ["discover", "--searcher", "manual", "--model", str(tiny_model_dir), "--data", str(data_dir),
            "--verbalizer", VERBALIZER, "--template", TEMPLATE, "--template", r"{sentence} It was[P]",
            "--template", r"{sentence}\nIn short:[P]", "--config", '{"per_step": 1}', "--out", str(run)]
    assert main([*args, "--iterations", "1"]) == 0
    assert main([*args, "--resume"]) == 0
    assert len((run / "history.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--template", "{sentence} is good"], "no answer slot [P]"),
        (["--template", "{review} is[P]"], "unknown field"),
        (["--template", TEMPLATE, "--verbalizer", '{"0":"bad","1":"good","2":"meh"}'], "do not occur in the data"),
        (["--template", TEMPLATE, "--verbalizer", '{"0":"bad"'], "not valid JSON"),
        (["--template", TEMPLATE], "classification task: give a verbalizer"),
    ],
)
def test_bad_input_is_one_clear_line(tiny_model_dir, data_dir, capsys, argv, message) -> None:
    code = main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data_dir), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("error: ") and "Traceback" not in err


def test_missing_model_and_empty_data(data_dir, tmp_path, capsys) -> None:
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(data_dir),
                 "--template", TEMPLATE, "--verbalizer", VERBALIZER]) == 2
    assert "cannot load model" in capsys.readouterr().err
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    assert main(["evaluate", "--data", str(empty), "--template", TEMPLATE, "--verbalizer", VERBALIZER]) == 2
    assert "no rows" in capsys.readouterr().err
