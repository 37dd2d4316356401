"""Export a soft prompt in PEFT's adapter format, so ``peft.PeftModel.from_pretrained(base, dir)``
runs it: ``adapter_config.json`` (a PROMPT_TUNING config written by PEFT itself) and
``adapter_model.safetensors`` (``prompt_embeddings``: the ``(n, H)`` vectors).

PEFT's prompt tuning only *prepends* virtual tokens to the input ids, so only a template whose
``[V]`` slots all come first (``[V*8]Review: {sentence}\\nSentiment:[P]``), on a causal LM whose
tokenizer puts no special token before the text, means the same thing there. A P-tuning prompt
exports its materialised vectors (the encoder is a training device; inference needs its output).
Our ``prompt.json`` is written beside the adapter: it holds the rest of the template and the
label words, which the PEFT user formats the input with.
"""

from __future__ import annotations

from pathlib import Path

from .. import atomic
from ..errors import ModelError, PromptFileError, TemplateError
from ..models.language_model import LanguageModel
from .prompt import Prompt
from .template import Soft

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def export_peft(prompt: Prompt, folder: str | Path, lm: LanguageModel) -> Path:
    """Write ``prompt`` as a PEFT PROMPT_TUNING adapter for ``lm`` into ``folder``; return the folder."""
    n = _leading_soft(prompt)
    if not lm.is_causal:
        raise ModelError(
            f"PEFT export supports causal LMs; {lm.name!r} is a masked LM (PEFT has no masked-LM prompt-tuning "
            "task): evaluate the prompt with autoprompt-search instead"
        )
    if lm.prefix_ids:
        raise ModelError(
            f"the tokenizer of {lm.name!r} puts {lm.decode(list(lm.prefix_ids))!r} before the text and our prompt's "
            "vectors come after it, but PEFT prepends virtual tokens before it: the export would score differently; "
            "use the prompt with autoprompt-search, or a model whose tokenizer adds no BOS token"
        )
    prompt.check_model(lm.name, lm.vocab_size, lm.hidden_size)
    try:
        from peft import PromptTuningConfig
        from safetensors.torch import save_file
    except ImportError:
        raise ModelError("PEFT export needs the peft package: pip install peft (it is in the dev extra)") from None
    config = lm.model.config
    peft_config = PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=n, token_dim=lm.hidden_size, num_transformer_submodules=1,
        num_attention_heads=config.num_attention_heads, num_layers=config.num_hidden_layers,
        base_model_name_or_path=lm.name, inference_mode=True,
    )
    folder = Path(folder)
    soft = prompt.soft.detach().float().cpu().contiguous()
    atomic.write_with(folder / WEIGHTS_NAME, lambda tmp: save_file({"prompt_embeddings": soft}, tmp))
    atomic.write_json(folder / CONFIG_NAME, peft_config.to_dict())
    prompt.save(folder, lm.decode)
    return folder


def _leading_soft(prompt: Prompt) -> int:
    """The number of ``[V]`` slots, all of which must open the template."""
    if prompt.soft is None:
        raise PromptFileError("this prompt has no soft vectors to export: train one with prompt-tuning or p-tuning")
    segments = prompt.template.segments
    lead = 0
    while lead < len(segments) and isinstance(segments[lead], Soft):
        lead += 1
    n_lead = sum(s.count for s in segments[:lead])
    if n_lead != prompt.template.n_soft:
        raise TemplateError(
            f"template {prompt.template.source!r} has [V] slots after other text, but PEFT only prepends virtual "
            "tokens: train a template whose [V*n] slots all come first, e.g. '[V*8]Review: {sentence}\\nSentiment:[P]'"
        )
    return n_lead
