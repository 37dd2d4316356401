"""The one-call API: ``discover(task, model, budget=...)`` runs the ``auto`` searcher.

For people who want a good prompt without choosing a search strategy: give labelled data (a
:class:`Task`, a data folder or file, or a demo task name), a model (a name, a folder, or a loaded
:class:`LanguageModel`) and a budget; get back the :class:`SearchResult` with the prompt (often an
:class:`~autoprompt_search.ensemble.EnsemblePrompt`), its dev and test scores, and the evidence of
every decision in ``result.selection``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.demo_tasks import DEMO_TASKS, load_demo
from ..data.loaders import load_task
from ..data.tasks import Task
from ..models import DEFAULT_MODEL, LanguageModel, load_model
from ..scoring.evaluator import Evaluator
from .base import SEARCHERS
from .records import Budget, SearchResult


def discover(
    task: Task | str | Path,
    model: LanguageModel | str = DEFAULT_MODEL,
    *,
    budget: Budget | float | None = None,
    searcher: str = "auto",
    seed: int = 0,
    run_dir: str | Path | None = None,
    evaluator: Evaluator | None = None,
    progress: bool = True,
    **options: Any,
) -> SearchResult:
    """Search a prompt for ``task`` with ``model`` within ``budget`` (a :class:`Budget`, or seconds).

    ``options`` are the searcher's (see :class:`~autoprompt_search.searchers.auto.AutoSearcher`:
    ``templates``, ``verbalizers``, ``ensemble``, ``guard``, ``soft``, ...).
    """
    if not isinstance(task, Task):
        task = load_demo(str(task)) if str(task) in DEMO_TASKS and not Path(task).exists() else load_task(task)
    lm = model if isinstance(model, LanguageModel) else load_model(model)
    if budget is not None and not isinstance(budget, Budget):
        budget = Budget(seconds=float(budget))
    instance = SEARCHERS[searcher](seed=seed, **options)
    return instance.search(task, lm, budget=budget, evaluator=evaluator, run_dir=run_dir, progress=progress)
