"""What every verb of the command line shares: the parser whose errors become one ``error:`` line,
option types, the data argument (a file, a folder or a demo task), the one Evaluator built from the
scoring options, and printing the result as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import atomic
from ..data.demo_tasks import DEMO_TASKS, load_demo
from ..data.loaders import load_task
from ..data.tasks import Task
from ..errors import AutopromptError
from ..models import LanguageModel
from ..prompts.demonstrations import Demonstrations
from ..prompts.template import unescape_cli
from ..scoring.evaluator import Evaluator
from ..scoring.generation import Decoding


class UsageError(AutopromptError):
    """A command line argparse rejects (unknown option, bad value)."""


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors reach ``main`` as one ``error:`` line instead of usage + exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; see `{self.prog} --help`")


def fail(error: AutopromptError) -> int:
    """Print the error as one line (problem and fix) and return the usage-error exit code."""
    print("error: " + " ".join(str(error).splitlines()), file=sys.stderr)
    return 2


def json_object(text: str) -> dict[str, Any]:
    """An option value that must be a JSON object."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON: write an object like '{{\"key\": 1}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object: write it like '{{\"key\": 1}}'")
    return value


def load_data(data: str, *, field_map: dict[str, str] | None = None, label_field: str | None = None,
              split: str | None = None) -> Task:
    """A data file or folder, or the name of a demo task when no such path exists."""
    if data in DEMO_TASKS and not Path(data).exists():
        return load_demo(data)
    return load_task(data, field_map=field_map, label_field=label_field, split=split)


def build_evaluator(args: argparse.Namespace, lm: LanguageModel, *, progress: bool = False) -> Evaluator:
    """The one Evaluator of a command, from the options every verb shares (new scoring options go here);
    a saved prompt's own calibration and demonstrations win over --calibrate/--demos."""
    demos = None
    if args.demos is not None:
        demos = Demonstrations(args.demos, args.demo_per_class, args.demo_selection, args.demo_seed,
                               unescape_cli(args.demo_separator))
    return Evaluator(lm, dtype=args.dtype, fact_match=args.fact_match, progress=progress,
                     calibration="contextual" if args.calibrate else None, demos=demos,
                     decoding=Decoding(num_beams=args.num_beams, max_new_tokens=args.max_new_tokens))


def emit(data: dict[str, Any], path: Path | None) -> None:
    """Print ``data`` as JSON, and write it to ``path`` too when one is given."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    print(text)
    if path:
        atomic.write_text(path, text + "\n")
