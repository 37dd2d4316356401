"""The toolkit's own error types.

Every error a user can cause derives from :class:`AutopromptError`, so callers (and the CLI) can
tell "your input is wrong, here is the fix" apart from a bug in the toolkit. Messages always name
the problem *and* the fix.
"""

from __future__ import annotations


class AutopromptError(ValueError):
    """Base class of every error caused by user input (template, data, model, prompt files)."""


class TemplateError(AutopromptError):
    """A template string that does not parse, or does not fit the model or the data."""


class VerbalizerError(AutopromptError):
    """A label → words mapping that does not fit the task or the tokenizer."""


class DataError(AutopromptError):
    """A data file or data set that cannot be read as a task."""


class ModelError(AutopromptError):
    """A model that cannot be found, loaded or used as asked."""


class PromptFileError(AutopromptError):
    """A saved prompt (prompt.json / prompt.safetensors) that is missing, corrupt or mismatched."""


class BudgetError(AutopromptError):
    """A search budget that allows no work at all."""


class StudyError(AutopromptError):
    """An Optuna study that cannot be opened or joined, or a search space that does not parse."""


class ConfigError(AutopromptError):
    """A searcher option that is unknown, missing, out of range, or more than the searcher uses."""
