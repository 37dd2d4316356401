"""A thin wrapper that gives every searcher the same view of a masked or causal LM.

Only this module and the Evaluator touch the network. It exposes the three things scoring and
search need: token ids for text, hidden states for a batch of ids (or embeddings, for soft
prompts and gradients), and vocabulary logits for a few selected hidden states — so the output
layer runs at answer positions only, never over the whole sequence.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ModelError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LanguageModel:
    """A frozen pretrained LM plus the tokenizer facts prompt building needs.

    ``prefix_ids``/``suffix_ids`` are the special tokens the tokenizer wraps text in (BOS, or
    CLS/SEP); causal models never get a suffix, since the answer must come last.
    """

    name: str
    model: Any
    tokenizer: Any
    is_causal: bool
    max_length: int
    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    pad_id: int
    mask_id: int | None
    _dtype_copies: dict[torch.dtype, LanguageModel] = field(default_factory=dict, repr=False)
    #: Per-model results worth computing once (e.g. the clean-token mask of :mod:`vocabulary`).
    memo: dict = field(default_factory=dict, repr=False)

    @classmethod
    def wrap(cls, model: Any, tokenizer: Any, *, name: str | None = None) -> LanguageModel:
        """Wrap an already loaded model and tokenizer (used by tests and by :func:`load_model`)."""
        model.eval()
        model.requires_grad_(False)
        is_causal = _is_causal(model)
        with_special = tokenizer("x", add_special_tokens=True)["input_ids"]
        bare = tokenizer("x", add_special_tokens=False)["input_ids"]
        start = _find(with_special, bare)
        prefix = tuple(with_special[:start]) if start >= 0 else ()
        suffix = tuple(with_special[start + len(bare) :]) if start >= 0 and not is_causal else ()
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        mask = tokenizer.mask_token_id if not is_causal else None
        if not is_causal and mask is None:
            raise ModelError(f"masked LM {name!r} has a tokenizer without a mask token; give it one")
        limit = getattr(model.config, "max_position_embeddings", None) or 2048
        if getattr(model.config, "type_vocab_size", None):  # BERT-style absolute positions
            limit = min(limit, getattr(tokenizer, "model_max_length", limit))
        return cls(
            name=name or getattr(model.config, "_name_or_path", "") or type(model).__name__,
            model=model,
            tokenizer=tokenizer,
            is_causal=is_causal,
            max_length=int(limit),
            prefix_ids=prefix,
            suffix_ids=suffix,
            pad_id=int(pad),
            mask_id=mask,
        )

    # --- facts ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def rotary_positions(self) -> bool:
        """Whether positions enter attention as rotations (RoPE: Llama, Mistral, Qwen, GPT-NeoX, ...),
        so only relative positions matter and any integer position, negative too, is valid."""
        return any("rope" in key or "rotary" in key for key in self.model.config.to_dict())

    @property
    def start_id(self) -> int:
        """What a causal LM reads when nothing stands before the answer (a template ``{sentence}[P]``
        on an empty or content-free input, without a BOS prefix): its BOS token, else its EOS, the
        document boundary GPT-2 generates from unconditionally. A row needs at least one position."""
        for token in (self.tokenizer.bos_token_id, self.tokenizer.eos_token_id):
            if token is not None:
                return int(token)
        return self.pad_id

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(int(i) for i in self.tokenizer.all_special_ids)

    # --- text ----------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, clean_up_tokenization_spaces=False)

    # --- network -------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings ``(B, T, H)`` for ids ``(B, T)``."""
        return self.model.get_input_embeddings()(input_ids)

    def hidden_states(
        self,
        attention_mask: torch.Tensor,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: Any = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final hidden states ``(B, T, H)`` (after the last norm), without any vocabulary logits.

        ``attention_mask`` covers the cached positions too when ``past_key_values`` is given (a
        masked LM takes a cache only as a deep prompt, see :mod:`deep_prompt`).
        """
        kwargs: dict[str, Any] = {"input_ids": input_ids, "inputs_embeds": inputs_embeds,
                                  "attention_mask": attention_mask}
        if self.is_causal or past_key_values is not None:
            kwargs.update({"use_cache": past_key_values is not None, self.cache_argument(): past_key_values,
                           "position_ids": position_ids})
        return self.model.base_model(**kwargs)[0]

    def cache_argument(self) -> str:
        """transformers renamed ``past_key_values`` to ``cache`` (5.x); use whichever this version takes."""
        parameters = inspect.signature(self.model.base_model.forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    def prefix_cache(self, attention_mask: torch.Tensor, input_ids: torch.Tensor | None,
                     inputs_embeds: torch.Tensor | None = None, *, past_key_values: Any = None,
                     position_ids: torch.Tensor | None = None) -> list[tuple[torch.Tensor, ...]]:
        """Per-layer ``(keys, values)``, each ``(B, kv_heads, T, head_dim)``, of a causal LM's prefix
        (given as ids, or as embeddings when it holds soft vectors). Behind a deep prompt
        (``past_key_values``, covered by ``attention_mask``) they hold its slots first."""
        out = self.model.base_model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                    use_cache=True, position_ids=position_ids,
                                    **({self.cache_argument(): past_key_values} if past_key_values is not None else {}))
        cache = out.get("cache") or out.get("past_key_values")
        return [(layer.keys, layer.values) for layer in cache.layers]

    def gather_cache(self, kv: list[tuple[torch.Tensor, ...]], index: torch.Tensor) -> Any:
        """A fresh cache holding rows ``index`` of ``kv`` (a forward pass appends to it in place)."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for layer, (keys, values) in enumerate(kv):
            cache.update(keys.index_select(0, index), values.index_select(0, index), layer)
        return cache

    def vocab_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits ``(N, V)`` for selected hidden states ``(N, H)``, in float32."""
        head = _head(self.model, self.is_causal)
        logits = head(hidden).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def token_logits(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` of only ``tokens`` (K ids) for hidden states ``(N, H)``, in float32.

        Causal LMs multiply by just those rows of the output layer; a masked LM's head has a
        transform before its decoder, so it is run whole and the columns are picked.
        """
        head = _head(self.model, self.is_causal)
        if not self.is_causal or not isinstance(head, nn.Linear):
            return self.vocab_logits(hidden)[:, tokens]
        weight = head.weight.index_select(0, tokens)
        logits = hidden @ weight.T
        if head.bias is not None:
            logits = logits + head.bias.index_select(0, tokens)
        logits = logits.float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def generate(self, request: str, *, samples: int, max_new_tokens: int, seed: int,
                 temperature: float = 0.9) -> list[str]:
        """``samples`` sampled replies to ``request`` (through the chat template if the tokenizer has
        one), reproducible for ``seed``; used to let an instruction model propose prompts (APE)."""
        if not self.is_causal:
            raise ModelError(f"{self.name} is a masked LM and cannot write text: generate prompts with a causal LM")
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template([{"role": "user", "content": request}],
                                                     add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        else:
            ids = [*self.prefix_ids, *self.tokenize(request)]
        prompt = torch.tensor([list(ids)], device=self.device)  # (1, T)
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                                      temperature=temperature, top_p=0.95, max_new_tokens=max_new_tokens,
                                      num_return_sequences=samples, pad_token_id=self.pad_id)
        return [self.tokenizer.decode(row[prompt.shape[1]:], skip_special_tokens=True) for row in out]

    def with_dtype(self, dtype: str | torch.dtype) -> LanguageModel:
        """This model in another precision (a cached converted copy; fp32 stays the reference)."""
        if isinstance(dtype, str) and dtype not in DTYPES:
            raise ModelError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        target = DTYPES[dtype] if isinstance(dtype, str) else dtype
        if target == self.dtype:
            return self
        if target not in self._dtype_copies:
            check_dtype_supported(target, self.device)
            converted = copy.deepcopy(self.model).to(target)
            self._dtype_copies[target] = LanguageModel.wrap(converted, self.tokenizer, name=self.name)
        return self._dtype_copies[target]


def check_dtype_supported(dtype: torch.dtype, device: torch.device) -> None:
    """Refuse precisions the device cannot run, before any work is done."""
    if device.type == "cpu" and dtype == torch.float16:
        raise ModelError("--dtype float16 is not supported on the CPU; use bfloat16 or float32")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ModelError("this GPU does not support bfloat16; use --dtype float16 or float32")


def _is_causal(model: Any) -> bool:
    names = " ".join(getattr(model.config, "architectures", None) or [type(model).__name__])
    if "MaskedLM" in names or "ForPreTraining" in names:
        return False
    if "CausalLM" in names or "LMHeadModel" in names:
        return True
    raise ModelError(
        f"{type(model).__name__} is neither a causal LM nor a masked LM; load a *ForCausalLM or *ForMaskedLM model"
    )


def _head(model: Any, is_causal: bool) -> nn.Module:
    """The module mapping final hidden states to vocabulary logits.

    Causal LMs: the output embedding (a linear layer). Masked LMs: the whole MLM head (BERT's
    ``cls``, RoBERTa's ``lm_head``), i.e. the one child that is not the encoder.
    """
    if is_causal:
        return model.get_output_embeddings()
    heads = [child for child in model.children() if child is not model.base_model]
    if len(heads) != 1:
        raise ModelError(
            f"cannot find the MLM head of {type(model).__name__}: expected one module beside the encoder"
        )
    return heads[0]


def _find(haystack: list[int], needle: list[int]) -> int:
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start : start + len(needle)] == needle:
            return start
    return -1
