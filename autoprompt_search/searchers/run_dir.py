"""The run directory: ``config.json``, ``history.jsonl``, ``checkpoint/``, ``prompt.json``, ``result.json``.

Every file is written atomically; the checkpoint is written after the history line, and on resume
the history is cut back to the checkpoint's step, so a kill at any moment loses at most one step.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from .. import atomic
from ..data.tasks import Task
from ..errors import PromptFileError
from ..models.language_model import LanguageModel
from .records import Budget, SearchResult, StepRecord

STATE = "state.json"
TENSORS = "state.safetensors"


class RunDir:
    """Reads and writes one search's artifacts in ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.checkpoint = self.path / "checkpoint"
        self.history_file = self.path / "history.jsonl"

    def start(self, searcher: str, config: dict[str, Any], task: Task, model: LanguageModel, budget: Budget) -> None:
        """Begin a fresh run: what an earlier run left here (its checkpoint above all) must not be resumed."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        self.history_file.unlink(missing_ok=True)
        shutil.rmtree(self.checkpoint, ignore_errors=True)
        for name in ("result.json", "prompt.json", "prompt.safetensors"):
            (self.path / name).unlink(missing_ok=True)
        atomic.write_json(self.path / "config.json", {
            "searcher": searcher, "config": config, "task": task.name, "model": model.name,
            "budget": dataclasses.asdict(budget),
        })

    def record(self, record: StepRecord, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        atomic.append_line(self.history_file, json.dumps(dataclasses.asdict(record)))
        if tensors:
            flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
            atomic.write_with(self.checkpoint / TENSORS, lambda tmp: save_file(flat, tmp))
        atomic.write_json(self.checkpoint / STATE, state)

    def load_checkpoint(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """The last checkpoint, or None when the run never finished a step."""
        state_file = self.checkpoint / STATE
        if not state_file.is_file():
            return None
        self._remove_leftovers()
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            tensors: dict[str, torch.Tensor] = {}
            if (self.checkpoint / TENSORS).is_file():
                from safetensors.torch import load_file

                # safetensors only: a pickle renamed to state.safetensors is refused, never unpickled.
                tensors = load_file(str(self.checkpoint / TENSORS))
        except Exception as error:
            raise PromptFileError(
                f"the checkpoint in {self.checkpoint} is unreadable ({error}): start the search without --resume"
            ) from None
        problem = _state_problem(state)
        if problem:
            raise PromptFileError(
                f"the checkpoint {state_file} is not one this toolkit wrote ({problem}): "
                "start the search without --resume"
            )
        return state, tensors

    def check_same_search(self, searcher: str, config: dict[str, Any]) -> None:
        """Refuse to resume a run that was started with another searcher or other options."""
        try:
            saved = json.loads((self.path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # config.json is informative only; the checkpoint alone can resume
        ours = json.loads(json.dumps({"searcher": searcher, "config": config}, default=str))
        theirs = {"searcher": saved.get("searcher"), "config": saved.get("config")} if isinstance(saved, dict) else {}
        if ours != theirs:
            raise PromptFileError(
                f"--resume: the run in {self.path} was started with other options ({json.dumps(theirs)}): "
                "resume it with the same searcher, templates, verbalizers and --config, or give another --out"
            )

    def _remove_leftovers(self) -> None:
        """Delete temporary files of atomic writes that a kill interrupted (never a finished file)."""
        for folder in (self.path, self.checkpoint):
            for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
                tmp.unlink(missing_ok=True)

    def history(self, steps: int) -> list[StepRecord]:
        """History lines up to the checkpointed step (later lines belong to a step lost in a crash)."""
        rows = [StepRecord(**row) for row in atomic.read_jsonl(self.history_file)][:steps]
        atomic.write_text(self.history_file, "".join(json.dumps(dataclasses.asdict(r)) + "\n" for r in rows))
        return rows

    def finish(self, result: SearchResult, decode: Any) -> None:
        result.prompt.save(self.path, decode)
        atomic.write_json(self.path / "result.json", result.to_json(decode))


def _state_problem(state: Any) -> str | None:
    """What is wrong with a checkpoint's ``state.json`` content, or None."""
    if not isinstance(state, dict):
        return f"a JSON {type(state).__name__}, not an object"
    expected = {"steps": int, "seconds": (int, float), "forward_passes": int, "rng": dict, "searcher": dict}
    for key, kind in expected.items():
        if key not in state:
            return f"no {key!r}"
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            return f"{key!r} is {state[key]!r}"
    if state["steps"] < 0 or state["forward_passes"] < 0:
        return "a negative step count"
    return None
