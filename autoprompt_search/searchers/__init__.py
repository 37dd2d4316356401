"""Searchers: every strategy behind one :class:`Searcher` interface, registered by name. The base
class owns the loop (budget, progress, history, checkpoints, final scoring); a searcher proposes
candidates and asks the shared Evaluator to score them. ``soft/`` holds the continuous searchers,
``candidates/`` the sources of discrete candidates, ``config`` how options are read and checked."""

from .autoprompt import AutoPromptSearcher
from .base import SEARCHERS, SearchContext, Searcher, register
from .filtering import FilterSearcher
from .labels import LabelSearcher
from .manual import ManualSearcher
from .optuna_search import OptunaSearcher
from .records import Budget, SearchResult, Step, StepRecord
from .soft.p_tuning import PTuningSearcher
from .soft.p_tuning_v2 import PTuningV2Searcher
from .soft.prefix_tuning import PrefixTuningSearcher
from .soft.prompt_tuning import PromptTuningSearcher
from .soft.trainer import Parameterization, PromptTensors, SoftSearcher

__all__ = [
    "SEARCHERS",
    "AutoPromptSearcher",
    "Budget",
    "FilterSearcher",
    "LabelSearcher",
    "ManualSearcher",
    "OptunaSearcher",
    "PTuningSearcher",
    "PTuningV2Searcher",
    "Parameterization",
    "PrefixTuningSearcher",
    "PromptTensors",
    "PromptTuningSearcher",
    "SearchContext",
    "SearchResult",
    "Searcher",
    "SoftSearcher",
    "Step",
    "StepRecord",
    "register",
]
