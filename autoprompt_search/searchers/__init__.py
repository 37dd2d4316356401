"""Searchers: every strategy behind one interface, registered by name."""

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
