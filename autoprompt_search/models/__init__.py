"""Models: ``load_model`` (a name, a local folder or the embedded SmolLM2 GGUF, converted once and
cached) and the :class:`LanguageModel` wrapper that gives masked and causal LMs one interface, plus
which vocabulary tokens may stand in a prompt. Beside ``data`` at the bottom: it knows no prompts."""

from .embedded import DEFAULT_MODEL
from .language_model import LanguageModel
from .loading import load_model, resolve_device

__all__ = ["DEFAULT_MODEL", "LanguageModel", "load_model", "resolve_device"]
