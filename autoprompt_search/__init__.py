"""autoprompt-search: find prompts for frozen language models automatically.

The pieces, from data to result: :class:`Task` → :class:`Template` + :class:`Verbalizer` →
:class:`Prompt` → :class:`Evaluator` (batched scoring) ← :class:`Searcher` → :class:`SearchResult`.
"""

from .api import discover
from .calibration import Calibration
from .demonstrations import Demonstrations
from .ensemble import EnsemblePrompt
from .errors import AutopromptError
from .evaluator import Evaluator, ScoreTable
from .loaders import load_demo, load_lama, load_lmbff, load_task
from .models import DEFAULT_MODEL, LanguageModel, load_model
from .prompt import Prompt
from .searchers import SEARCHERS, Budget, ManualSearcher, Searcher, SearchResult
from .tasks import Example, Task, k_shot
from .template import Template, parse_template
from .verbalizer import Verbalizer

__all__ = [
    "DEFAULT_MODEL", "SEARCHERS", "AutopromptError", "Budget", "Calibration", "Demonstrations", "EnsemblePrompt", "Evaluator",
    "Example", "LanguageModel", "ManualSearcher", "Prompt", "ScoreTable", "SearchResult", "Searcher", "Task",
    "Template", "Verbalizer", "discover", "k_shot", "load_demo", "load_lama", "load_lmbff", "load_model", "load_task",
    "parse_template",
]
