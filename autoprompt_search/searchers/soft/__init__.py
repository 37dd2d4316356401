"""Continuous searchers: the soft-prompt trainer (one optimizer update per step) and its four
parameterisations — prompt tuning, P-tuning, P-tuning v2 and prefix-tuning — with where vectors start."""
