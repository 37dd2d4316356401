"""The perf benchmarks run end to end on a tiny model, so a change cannot leave one broken until the
next long measurement (their numbers come from the real model; here only the plumbing and the
equality checks they assert are exercised)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from generation_fixtures import generation_task

from autoprompt_search.models.language_model import LanguageModel
from benchmarks import perf_test_set


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = Path(os.environ.get("AUTOPROMPT_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (path / "SOURCES.md").is_file():
        pytest.skip(f"benchmark data not found at {path}; set AUTOPROMPT_DATA_DIR to the shared data directory")
    return path


def test_test_set_benchmark_compares_every_shape(tiny_causal_lm: LanguageModel, data_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perf_test_set, "load_model", lambda name: tiny_causal_lm)
    # E2E's references outgrow the tiny model's 128 positions: its dev split is a tiny table-to-text task here
    monkeypatch.setattr(perf_test_set, "load_e2e", lambda root, **kw: generation_task())
    result = perf_test_set.run(16, data_dir, repeat=1)
    assert [s["prompt"] for s in result["shapes"]] == ["instruction", "soft", "deep-references"]
    for shape in result["shapes"]:
        assert shape["same_predictions"] and shape["max_score_difference"] < perf_test_set.TOLERANCE
        assert shape["plain_seconds"] > 0 and shape["reuse_seconds"] > 0
    assert result["speedup"] == result["shapes"][0]["speedup"]
