"""Tuning: Optuna over any registered searcher's hyperparameters, each trial one whole search. The
layer above searchers (it runs them); the Optuna study helpers it shares with the optuna searcher
live in :mod:`autoprompt_search.searchers.studies`."""
