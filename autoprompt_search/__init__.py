"""autoprompt-search: find prompts for frozen language models automatically.

The pieces, from data to result: :class:`Task` → :class:`Template` + :class:`Verbalizer` →
:class:`Prompt` → :class:`Evaluator` (batched scoring) ← :class:`Searcher` → :class:`SearchResult`.
"""

from .data.demo_tasks import load_demo
from .data.loaders import load_lama, load_lmbff, load_task
from .data.tasks import Example, Task, k_shot
from .errors import AutopromptError
from .models import DEFAULT_MODEL, LanguageModel, load_model
from .prompts.calibration import Calibration
from .prompts.demonstrations import Demonstrations
from .prompts.prompt import Prompt
from .prompts.template import Template, parse_template
from .prompts.verbalizer import Verbalizer
from .scoring.evaluator import Evaluator
from .scoring.score_table import ScoreTable
from .searchers import SEARCHERS, Budget, ManualSearcher, Searcher, SearchResult

__all__ = [
    "DEFAULT_MODEL", "SEARCHERS", "AutopromptError", "Budget", "Calibration", "Demonstrations", "Evaluator",
    "Example", "LanguageModel", "ManualSearcher", "Prompt", "ScoreTable", "SearchResult", "Searcher", "Task",
    "Template", "Verbalizer", "k_shot", "load_demo", "load_lama", "load_lmbff", "load_model", "load_task",
    "parse_template",
]
