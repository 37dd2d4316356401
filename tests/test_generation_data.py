"""Generation tasks from files: target columns, references grouped by input, E2E's low-data draw, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from autoprompt_search.data.e2e import load_e2e, write_e2e_folder
from autoprompt_search.data.loaders import load_task
from autoprompt_search.data.tasks import one_per_reference
from autoprompt_search.errors import DataError


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mr", "ref"])
        writer.writerows(rows)
    return path


def test_e2e_csv_groups_references_by_mr(tmp_path: Path) -> None:
    rows = [("name[A], area[x]", "A is in x."), ("name[B]", "B."), ("name[A], area[x]", "In x is A."),
            ("name[A], area[x]", "A is in x.")]
    path = _write_csv(tmp_path / "devset.csv", rows)
    task = load_task(path)
    assert task.kind == "generation" and task.fields == ("mr",)
    a, b = task.split("test")
    assert a.fields == {"mr": "name[A], area[x]"} and a.references == ("A is in x.", "In x is A.", "A is in x.")
    assert a.label == "A is in x." and b.references == ("B.",)


def test_jsonl_target_lists_and_tsv_target_column(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(json.dumps({"text": "t1", "target": ["r1", "r2"]}) + "\n"
                                          + json.dumps({"text": "t2", "target": "r3"}) + "\n")
    (tmp_path / "dev.tsv").write_text("text\ttarget\nt3\tr4\nt3\tr5\n")
    task = load_task(tmp_path)
    assert task.kind == "generation"
    assert [x.references for x in task.split("train")] == [("r1", "r2"), ("r3",)]
    assert [x.references for x in task.split("dev")] == [("r4", "r5")]


def test_kind_generation_with_any_label_column(tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    path.write_text("sentence\tsummary\ns\tone\ns\ttwo\n")
    task = load_task(path, kind="generation", label_field="summary")
    assert task.kind == "generation" and task.split("test")[0].references == ("one", "two")


@pytest.mark.parametrize(("line", "message"), [
    ({"text": "t", "target": []}, "no reference"),
    ({"text": "t", "target": ""}, "empty reference"),
    ({"text": "t", "target": ["ok", "  "]}, "empty reference"),
    ({"text": "t", "target": [{"a": 1}]}, "must be text"),
])
def test_bad_targets_name_the_line_and_the_fix(tmp_path: Path, line: dict, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"text": "fine", "target": "x"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DataError, match=message) as info:
        load_task(path)
    assert "line 2" in str(info.value)


def test_csv_mr_without_reference_text_is_refused(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "devset.csv", [("name[A]", "A."), ("name[B]", "")])
    with pytest.raises(DataError, match=r"line 3: empty reference in 'ref'"):
        load_task(path)


def test_one_per_reference_flattens_for_training() -> None:
    from generation_fixtures import generation_task

    train = generation_task().split("train")
    flat = one_per_reference(train)
    assert len(flat) == sum(len(x.references) for x in train)
    assert all(len(x.references) == 1 and x.label == x.references[0] for x in flat)


def _fake_e2e(root: Path, dev_mrs: int = 30, test_mrs: int = 12) -> Path:
    (root / "E2E").mkdir(parents=True)
    dev = [(f"name[D{i}]", f"D{i} ref {j}.") for i in range(dev_mrs) for j in range(2)]
    _write_csv(root / "E2E" / "devset.csv", dev)
    _write_csv(root / "E2E" / "testset_w_refs.csv", [(f"name[T{i}]", f"T{i} ref {j}.") for i in range(test_mrs)
                                                    for j in range(3)])
    return root


def test_e2e_lowdata_draw_is_seeded_disjoint_and_nested(tmp_path: Path) -> None:
    root = _fake_e2e(tmp_path)
    small, large = load_e2e(root, train=5, dev=4, seed=13), load_e2e(root, train=10, dev=4, seed=13)
    mrs = lambda task, part: [x.fields["mr"] for x in task.split(part)]  # noqa: E731
    assert not set(mrs(large, "train")) & set(mrs(large, "dev"))
    assert mrs(small, "dev") == mrs(large, "dev") and mrs(large, "train")[:5] == mrs(small, "train")
    assert mrs(load_e2e(root, train=5, dev=4, seed=21), "train") != mrs(small, "train")
    assert len(small.split("test")) == 12 and all(len(x.references) == 3 for x in small.split("test"))
    assert mrs(load_e2e(root, train=5, dev=4, seed=13, test_limit=3), "test") == ["name[T0]", "name[T1]", "name[T2]"]


def test_e2e_folder_round_trips_through_load_task(tmp_path: Path) -> None:
    task = load_e2e(_fake_e2e(tmp_path / "data"), train=6, dev=3, seed=1)
    loaded = load_task(write_e2e_folder(task, tmp_path / "e2e"))
    assert loaded.kind == "generation"
    for part in ("train", "dev", "test"):
        assert [(dict(x.fields), x.references) for x in loaded.split(part)] == \
               [(dict(x.fields), x.references) for x in task.split(part)]


def test_e2e_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="E2E"):
        load_e2e(tmp_path)
    with pytest.raises(DataError, match="fewer"):
        load_e2e(_fake_e2e(tmp_path), train=40, dev=10)
