"""Searchers: every strategy behind one interface, registered by name."""

from .autoprompt import AutoPromptSearcher
from .base import SEARCHERS, Budget, SearchContext, Searcher, SearchResult, Step, StepRecord, register
from .filtering import FilterSearcher
from .labels import LabelSearcher
from .manual import ManualSearcher

__all__ = [
    "SEARCHERS", "AutoPromptSearcher", "Budget", "FilterSearcher", "LabelSearcher", "ManualSearcher", "SearchContext",
    "SearchResult", "Searcher", "Step", "StepRecord", "register",
]
