"""Shared benchmark plumbing: data location, timing, matmul peak, environment, JSON output."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoprompt_search import atomic

RESULTS = Path(__file__).resolve().parents[1] / "results"


def data_dir(explicit: str | None = None) -> Path:
    """``--data-dir``, else ``$AUTOPROMPT_DATA_DIR``, else ``../shared/data`` beside the repo."""
    fallback = Path(__file__).resolve().parents[2] / "shared" / "data"
    path = Path(explicit or os.environ.get("AUTOPROMPT_DATA_DIR") or fallback)
    if not path.is_dir():
        raise SystemExit(f"benchmark data not found at {path}: pass --data-dir or set AUTOPROMPT_DATA_DIR")
    return path


def timed(fn: Callable[[], Any], *, repeat: int = 1, warmup: int = 0) -> tuple[float, Any]:
    """Best wall-clock seconds of ``repeat`` calls (after ``warmup`` calls) and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def matmul_peak(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    """Measured FLOP/s of an n×n matmul in ``dtype`` on this machine (a ceiling for our scoring)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    calls, started = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - started < seconds:
        a @ b
        calls += 1
    return 2 * n**3 * calls / (time.perf_counter() - started)


def environment(dtype: str = "float32") -> dict[str, Any]:
    """Versions, CPU, threads and dtype: what a measured number depends on besides the code."""
    import transformers

    return {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "numpy": np.__version__, "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "platform": platform.platform(), "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "dtype": dtype,
    }


def trained_parameters(prompt: dict[str, Any]) -> int:
    """The trained numbers a saved prompt's JSON holds: its soft vectors, deep prefix and head (by
    their recorded shapes), summed over an ensemble's members."""
    own = sum(int(np.prod(prompt[name]["shape"])) for name in ("soft", "deep", "head") if prompt.get(name))
    return own + sum(trained_parameters(member) for member in prompt.get("members", ()))


def write_result(name: str, data: dict[str, Any]) -> Path:
    path = RESULTS / "perf" / f"{name}.json"
    atomic.write_json(path, data)
    return path
