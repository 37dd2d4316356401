"""Searchers: every strategy behind one interface, registered by name."""

from .base import SEARCHERS, Budget, SearchContext, Searcher, SearchResult, Step, StepRecord, register
from .manual import ManualSearcher

__all__ = [
    "SEARCHERS", "Budget", "ManualSearcher", "SearchContext", "SearchResult", "Searcher", "Step", "StepRecord",
    "register",
]
