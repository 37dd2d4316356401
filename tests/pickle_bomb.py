"""A pickle that leaves a marker file when unpickled, and a guard that fails a test if anything unpickles."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch


class Payload:
    """Unpickling this object creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def write_bomb(target: Path, tensor_name: str, shape: tuple[int, ...], marker: Path, writer: str) -> None:
    """Write a pickled dict holding a tensor and a :class:`Payload`, with pickle or torch.save."""
    payload = {tensor_name: torch.zeros(*shape), "trap": Payload(marker)}
    if writer == "pickle":
        target.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, target)


def forbid_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a file was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
