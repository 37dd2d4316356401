"""Loaders against the real benchmark files (counts from shared/data/SOURCES.md) and against broken input."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from autoprompt_search.data.demo_tasks import load_demo
from autoprompt_search.data.loaders import (
    from_hf_dataset,
    lama_manual_template,
    load_lama,
    load_lmbff,
    load_task,
)
from autoprompt_search.data.tasks import Task, k_shot
from autoprompt_search.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = Path(os.environ.get("AUTOPROMPT_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if not (path / "SOURCES.md").is_file():
        pytest.skip(
            f"benchmark data not found at {path}; set AUTOPROMPT_DATA_DIR to the shared data directory"
        )
    return path


def label_counts(task: Task, split: str) -> dict[str, int]:
    return dict(Counter(example.label for example in task.split(split)))


# --- real benchmark files ------------------------------------------------------------------------


def test_glue_tsv_file_is_one_split_with_stripped_text(data_dir: Path) -> None:
    task = load_task(data_dir / "SST-2" / "glue" / "dev.tsv")
    assert task.kind == "classification"
    assert task.labels == ("0", "1")
    assert task.fields == ("sentence",)
    assert list(task.splits) == ["test"]
    assert label_counts(task, "test") == {"0": 428, "1": 444}
    assert task.split("test")[0].fields["sentence"] == "it 's a charming and often affecting journey ."


def test_single_file_split_name_is_configurable(data_dir: Path) -> None:
    task = load_task(data_dir / "SST-2" / "autoprompt" / "test-labeled.tsv", name="sst2", split="dev")
    assert task.name == "sst2"
    assert label_counts(task, "dev") == {"0": 917, "1": 904}


def test_directory_split_can_be_restricted(data_dir: Path) -> None:
    task = load_task(data_dir / "RTE" / "glue", split="dev")
    assert list(task.splits) == ["dev"]
    assert len(task.split("dev")) == 277


@pytest.mark.parametrize(
    ("task_name", "n_labels", "train_rows", "test_rows"),
    [
        ("sst-5", 5, 80, 2210),
        ("mr", 2, 32, 2000),
        ("cr", 2, 32, 2000),
        ("mpqa", 2, 32, 2000),
        ("subj", 2, 32, 2000),
        ("trec", 6, 96, 500),
    ],
)
def test_lmbff_headerless_csv(
    data_dir: Path, task_name: str, n_labels: int, train_rows: int, test_rows: int
) -> None:
    task = load_lmbff(data_dir, task_name, seed=42)
    assert task.labels == tuple(str(i) for i in range(n_labels))
    assert task.fields == ("sentence",)
    assert [len(task.split(s)) for s in ("train", "dev", "test")] == [train_rows, train_rows, test_rows]
    assert set(label_counts(task, "train").values()) == {16}


def test_trec_test_label_distribution(data_dir: Path) -> None:
    counts = label_counts(load_lmbff(data_dir, "trec"), "test")
    assert [counts[str(i)] for i in range(6)] == [138, 94, 9, 65, 81, 113]


def test_lmbff_sst2_and_rte_tsv(data_dir: Path) -> None:
    sst2 = load_lmbff(data_dir, "sst-2", seed=100)  # task name matches case-insensitively
    assert sst2.name == "SST-2"
    assert [len(sst2.split(s)) for s in ("train", "dev", "test")] == [32, 32, 872]
    rte = load_lmbff(data_dir, "RTE", seed=21)
    assert rte.fields == ("sentence1", "sentence2")
    assert rte.labels == ("entailment", "not_entailment")
    assert label_counts(rte, "test") == {"entailment": 146, "not_entailment": 131}


@pytest.mark.parametrize(("task_name", "test_rows"), [("SNLI", 9842), ("MNLI", 9815)])
def test_lmbff_nli_uses_generative_nli_dev_as_test(data_dir: Path, task_name: str, test_rows: int) -> None:
    task = load_lmbff(data_dir, task_name, seed=13)
    assert task.labels == ("contradiction", "entailment", "neutral")
    assert task.fields == ("sentence1", "sentence2")
    assert label_counts(task, "train") == {"contradiction": 16, "entailment": 16, "neutral": 16}
    assert len(task.split("dev")) == 48
    assert len(task.split("test")) == test_rows
    assert set(task.split("test")[0].fields) == {"sentence1", "sentence2"}


def test_fewglue_directory_maps_dev32_and_val(data_dir: Path) -> None:
    task = load_task(data_dir / "CB" / "FewGLUE_32dev")
    assert task.fields == ("premise", "hypothesis")
    assert task.labels == ("contradiction", "entailment", "neutral")
    assert [len(task.split(s)) for s in ("train", "dev", "test")] == [32, 32, 56]
    assert label_counts(task, "test") == {"entailment": 23, "contradiction": 28, "neutral": 5}


def test_boolq_boolean_labels_become_strings(data_dir: Path) -> None:
    task = load_task(data_dir / "BoolQ" / "FewGLUE_32dev", split="test")
    assert task.labels == ("false", "true")
    assert task.fields == ("question", "passage")
    assert label_counts(task, "test") == {"true": 2033, "false": 1237}


def test_generic_csv_with_field_map(data_dir: Path) -> None:
    """AG News is a headerless 3-column csv: columns are named label, sentence1, sentence2."""
    task = load_task(
        data_dir / "AGNews" / "ag_news_csv" / "test.csv",
        field_map={"title": "sentence1", "description": "sentence2"},
    )
    assert task.fields == ("title", "description")
    assert label_counts(task, "test") == {"1": 1900, "2": 1900, "3": 1900, "4": 1900}


def test_generic_tsv_with_label_field(data_dir: Path) -> None:
    task = load_task(
        data_dir / "SICK-E" / "SICK.txt",
        field_map={"premise": "sentence_A", "hypothesis": "sentence_B"},
        label_field="entailment_label",
    )
    assert task.labels == ("CONTRADICTION", "ENTAILMENT", "NEUTRAL")
    assert len(task.split("test")) == 9840


def test_lama_relation(data_dir: Path) -> None:
    task = load_lama(data_dir, "P19")
    assert task.kind == "fact"
    assert task.labels == ()
    assert task.fields == ("sub_label",)
    assert [len(task.split(s)) for s in ("train", "dev", "test")] == [800, 200, 943]
    first = task.split("train")[0]
    assert (first.fields["sub_label"], first.label) == ("Bacil", "Bratislava")


def test_lama_train_and_dev_drop_facts_that_answer_with_their_subject(data_dir: Path) -> None:
    """P36 "capital" in AutoPrompt's files: 671 of 800 train and 181 of 200 dev facts are
    municipalities that are their own capital; LAMA's test facts are kept whole."""
    task = load_lama(data_dir, "P36")
    kept = load_lama(data_dir, "P36", drop_self_answers=False)
    assert [len(task.split(s)) for s in ("train", "dev", "test")] == [129, 19, 703]
    assert [len(kept.split(s)) for s in ("train", "dev", "test")] == [800, 200, 703]
    assert not any(e.label.casefold() == e.fields["sub_label"].casefold()
                   for s in ("train", "dev") for e in task.split(s))
    assert task.split("test") == kept.split("test")


def test_lama_jsonl_file_is_detected_as_facts(data_dir: Path) -> None:
    task = load_task(data_dir / "LAMA" / "mlama1.1_en" / "P19" / "dev.jsonl")
    assert task.kind == "fact"
    assert len(task.split("test")) == 189


@pytest.mark.parametrize(
    ("relation", "template"),
    [
        ("P19", "{sub_label} was born in [P]"),
        ("P36", "The capital of {sub_label} is [P]"),
        ("P413", "{sub_label} plays in [P] position ."),
        ("P1923", "[P] participated in the {sub_label} ."),
    ],
)
def test_lama_manual_template(data_dir: Path, relation: str, template: str) -> None:
    assert lama_manual_template(data_dir, relation) == template


def test_k_shot_is_seeded_and_balanced(data_dir: Path) -> None:
    rows = load_task(data_dir / "SST-2" / "glue" / "dev.tsv").split("test")
    sample = k_shot(rows, 8, seed=1)
    assert Counter(example.label for example in sample) == {"0": 8, "1": 8}
    assert sample == k_shot(rows, 8, seed=1)
    assert sample != k_shot(rows, 8, seed=2)


# --- bundled demos -------------------------------------------------------------------------------


def test_sentiment_demo_is_balanced_per_split() -> None:
    task = load_demo("sentiment")
    assert task.labels == ("negative", "positive")
    assert sum(len(rows) for rows in task.splits.values()) >= 150
    for split in ("train", "dev", "test"):
        counts = label_counts(task, split)
        assert counts["negative"] == counts["positive"], split
    sentences = [ex.fields["sentence"] for rows in task.splits.values() for ex in rows]
    assert len(set(sentences)) == len(sentences)
    assert all(5 <= len(sentence.split()) <= 20 for sentence in sentences)


def test_capitals_demo_is_a_fact_task() -> None:
    task = load_demo("capitals")
    assert task.kind == "fact"
    assert sum(len(rows) for rows in task.splits.values()) >= 100
    assert all(task.has_split(split) for split in ("train", "dev", "test"))
    facts = {ex.fields["sub_label"]: ex.label for rows in task.splits.values() for ex in rows}
    assert facts["France"] == "Paris"


def test_unknown_demo() -> None:
    with pytest.raises(DataError, match="demo tasks: sentiment, capitals"):
        load_demo("nope")


# --- generic files and errors --------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_split_column_and_field_map(tmp_path: Path) -> None:
    rows = [
        {"review": "good", "stars": 5, "split": "train"},
        {"review": "bad", "stars": 1, "split": "dev"},
        {"review": "fine", "stars": 10},
    ]
    path = write(tmp_path / "reviews.jsonl", "\n".join(json.dumps(row) for row in rows) + "\n\n")
    task = load_task(path, field_map={"sentence": "review"}, label_field="stars")
    assert task.labels == ("1", "5", "10")
    assert {name: len(rows) for name, rows in task.splits.items()} == {"train": 1, "dev": 1, "test": 1}


def test_csv_with_header(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", 'text,label\n"hello, world",pos\nbye,neg\n')
    task = load_task(path)
    assert task.split("test")[0].fields == {"text": "hello, world"}
    assert task.labels == ("neg", "pos")


def test_headerless_csv_with_word_labels(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", 'positive,what a lovely day\nnegative,"sad, grey and cold"\n')
    task = load_task(path)
    assert task.labels == ("negative", "positive")
    assert task.split("test")[1].fields == {"sentence": "sad, grey and cold"}


def test_unsupported_suffix_and_encoding(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'"):
        load_task(write(tmp_path / "data.xlsx", "x"))
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("sentence\tlabel\ncaf\u00e9\t1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text"):
        load_task(latin1)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_task(tmp_path / "absent.tsv")


@pytest.mark.parametrize(("filename", "text"), [("empty.jsonl", ""), ("header.tsv", "sentence\tlabel\n")])
def test_empty_file(tmp_path: Path, filename: str, text: str) -> None:
    with pytest.raises(DataError, match="has no rows"):
        load_task(write(tmp_path / filename, text))


def test_malformed_jsonl_line_is_located(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", '{"sentence": "a", "label": "x"}\n\n{"sentence": "b", label: 1}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 3: not valid JSON"):
        load_task(path)


def test_malformed_tsv_line_is_located(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.tsv", "sentence\tlabel\nok\t1\ntoo\tmany\tcells\n")
    with pytest.raises(DataError, match=r"bad\.tsv, line 3: expected 2 columns"):
        load_task(path)


def test_row_missing_a_field(tmp_path: Path) -> None:
    path = write(tmp_path / "rows.jsonl", '{"sentence": "a", "label": "x"}\n{"sentence": "b"}\n')
    with pytest.raises(DataError, match=r"rows\.jsonl, line 2: row has no 'label' value"):
        load_task(path)


def test_unknown_field_map_column_lists_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "rows.tsv", "text\tlabel\nhi\t1\n")
    with pytest.raises(DataError, match=r"no column 'review'; columns: text, label"):
        load_task(path, field_map={"sentence": "review"})


def test_no_text_column_suggests_field_map(tmp_path: Path) -> None:
    path = write(tmp_path / "rows.tsv", "body\tlabel\nhi\t1\n")
    with pytest.raises(DataError, match="pass field_map"):
        load_task(path)


def test_directory_without_split_files(tmp_path: Path) -> None:
    write(tmp_path / "notes.md", "nothing here")
    with pytest.raises(DataError, match=r"holds no train/dev/test files \(it has: notes\.md\)"):
        load_task(tmp_path)


def test_splits_with_different_fields(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", "sentence\tlabel\na\t1\n")
    write(tmp_path / "test.jsonl", '{"text": "b", "label": "1"}\n')
    with pytest.raises(DataError, match="pass field_map so every split uses the same names"):
        load_task(tmp_path)


def test_lmbff_unknown_seed_lists_seeds(data_dir: Path) -> None:
    with pytest.raises(DataError, match=r"no k-shot split '16-7'.*16-13"):
        load_lmbff(data_dir, "SST-2", seed=7)


# --- Hugging Face data sets ----------------------------------------------------------------------


def test_from_hf_dataset_dict() -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    splits = {
        name: datasets.Dataset.from_dict(rows, features=features)
        for name, rows in {
            "train": {"text": [" good ", "bad"], "label": [1, 0]},
            "validation": {"text": ["fine"], "label": [1]},
            "test": {"text": ["unlabelled"], "label": [-1]},
        }.items()
    }
    task = from_hf_dataset(
        datasets.DatasetDict(splits), text_fields={"sentence": "text"}, label_field="label", name="toy"
    )
    assert task.labels == ("neg", "pos")
    assert task.split("train")[0].fields == {"sentence": "good"}
    assert task.split("dev")[0].label == "pos"
    assert not task.has_split("test")


def test_from_hf_single_dataset() -> None:
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_dict({"premise": ["a"], "hypothesis": ["b"], "label": [True]})
    task = from_hf_dataset(dataset, text_fields=["premise", "hypothesis"], label_field="label", name="x")
    assert task.split("test")[0].fields == {"premise": "a", "hypothesis": "b"}
    assert task.labels == ("true",)
