"""Model loading and the LanguageModel wrapper."""

from .embedded import DEFAULT_MODEL
from .language_model import LanguageModel
from .loading import load_model, resolve_device

__all__ = ["DEFAULT_MODEL", "LanguageModel", "load_model", "resolve_device"]
