"""Demo tasks written for this package (not the in-context *demonstrations* of
:mod:`autoprompt_search.prompts.demonstrations`): a sentiment task and country → capital facts,
shipped as jsonl so the default run and the examples work offline."""

from __future__ import annotations

from importlib import resources

from ..errors import DataError
from .loaders import load_task
from .tasks import Task

DEMO_TASKS = ("sentiment", "capitals")


def load_demo(name: str) -> Task:
    """A small task shipped with the package (``sentiment`` or ``capitals``), so examples run offline."""
    if name not in DEMO_TASKS:
        raise DataError(f"no demo task {name!r}; demo tasks: {', '.join(DEMO_TASKS)}")
    resource = resources.files("autoprompt_search.data") / "demo_data" / f"{name}.jsonl"
    with resources.as_file(resource) as path:
        return load_task(path, name=name)
