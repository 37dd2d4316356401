"""Searchers: every strategy behind one interface, registered by name."""

from .auto import AutoSearcher
from .autoprompt import AutoPromptSearcher
from .base import SEARCHERS, Budget, SearchContext, Searcher, SearchResult, Step, StepRecord, register
from .filtering import FilterSearcher
from .labels import LabelSearcher
from .manual import ManualSearcher
from .optuna_search import OptunaSearcher
from .p_tuning import PTuningSearcher
from .p_tuning_v2 import PTuningV2Searcher
from .prefix_tuning import PrefixTuningSearcher
from .prompt_tuning import PromptTuningSearcher
from .soft import Parameterization, PromptTensors, SoftSearcher

__all__ = [
    "SEARCHERS",
    "AutoPromptSearcher",
    "AutoSearcher",
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
