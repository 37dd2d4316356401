"""Searchers: every strategy behind one interface, registered by name."""

from .autoprompt import AutoPromptSearcher
from .base import SEARCHERS, Budget, SearchContext, Searcher, SearchResult, Step, StepRecord, register
from .labels import LabelSearcher
from .manual import ManualSearcher
from .p_tuning import PTuningSearcher
from .p_tuning_v2 import PTuningV2Searcher
from .prefix_tuning import PrefixTuningSearcher
from .prompt_tuning import PromptTuningSearcher
from .soft import Parameterization, PromptTensors, SoftSearcher

__all__ = [
    "SEARCHERS",
    "AutoPromptSearcher",
    "Budget",
    "LabelSearcher",
    "ManualSearcher",
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
