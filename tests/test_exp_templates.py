"""The template experiment's bookkeeping: variants that need missing options, and the README table."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.exp_templates import evaluator_options, summarise


def _run(run: str, found: str, test: float, passes: int, halving: bool = True) -> dict:
    return {"run": run, "task": "SST-2", "seed": 13, "variant": "base", "halving": halving, "found": found,
            "found_words": {"0": ["bad"], "1": ["good"]}, "dev": {"accuracy": 0.8}, "test": {"accuracy": test},
            "manual_test": {"accuracy": 0.7}, "candidates": 44, "search_forward_passes": passes, "test_n": 872,
            "seconds": 100.0}


def test_readme_tables_main_results_and_the_ablation(tmp_path: Path) -> None:
    (tmp_path / "SST-2-13-base.json").write_text(json.dumps(_run("SST-2-13-base", "{sentence} It was[P]", 0.9, 900)))
    (tmp_path / "SST-2-13-base-nohalving.json").write_text(
        json.dumps(_run("SST-2-13-base", "{sentence} It was[P]", 0.9, 1400, halving=False)
                   | {"run": "SST-2-13-base-nohalving"}))
    (tmp_path / "test-cache.json").write_text("{}")
    summarise(tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert "| SST-2 | base | 1 | 0.900 ± 0.000 | 0.700 ± 0.000 | 0.800 | 872 | 100 |" in readme
    assert "| yes | 900 / 1400 | 0.900 / 0.900 |" in readme


def test_variant_options_follow_what_the_evaluator_offers() -> None:
    assert evaluator_options("base") == {}
    calibrated = evaluator_options("calib")
    assert calibrated is None or calibrated == {"calibration": "contextual"}
    demos = evaluator_options("demos", seed=21)
    assert demos is None or demos["demos"].seed == 21
