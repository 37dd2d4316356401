"""Searchers: every strategy behind one interface, registered by name."""

from .autoprompt import AutoPromptSearcher
from .base import SEARCHERS, Budget, SearchContext, Searcher, SearchResult, Step, StepRecord, register
from .filtering import FilterSearcher
from .labels import LabelSearcher
from .manual import ManualSearcher
from .optuna_search import OptunaSearcher

__all__ = [
    "SEARCHERS", "AutoPromptSearcher", "Budget", "FilterSearcher", "LabelSearcher", "ManualSearcher",
    "OptunaSearcher", "SearchContext",
    "SearchResult", "Searcher", "Step", "StepRecord", "register",
]
