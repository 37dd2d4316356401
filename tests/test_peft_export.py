"""A soft prompt exported in PEFT's format predicts what our Evaluator predicts."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from autoprompt_search import Evaluator, Prompt
from autoprompt_search.cli import main
from autoprompt_search.errors import ModelError, TemplateError
from autoprompt_search.prompts.peft_export import export_peft

peft = pytest.importorskip("peft")

VERBALIZER = {"0": "bad", "1": "good"}


def _soft_prompt(template: str, lm) -> Prompt:
    prompt = Prompt.build(template, VERBALIZER)
    soft = torch.randn(prompt.template.n_soft, lm.hidden_size, generator=torch.Generator().manual_seed(1))
    return dataclasses.replace(prompt, soft=soft)


def test_peft_loads_the_export_and_scores_like_the_evaluator(tiny_gpt2_lm, sentiment_task, tmp_path) -> None:
    lm = tiny_gpt2_lm
    prompt = _soft_prompt("[V*3]{sentence} It was[P]", lm)
    folder = export_peft(prompt, tmp_path / "adapter", lm)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 3
    examples = sentiment_task.split("dev")[:6]
    evaluator = Evaluator(lm)
    ours = evaluator.score([prompt], examples, sentiment_task).scores[0]  # (E, L)
    model = peft.PeftModel.from_pretrained(copy.deepcopy(lm.model), str(folder))
    model.eval()
    checked = evaluator.encoder.validate(prompt, sentiment_task)
    for e, example in enumerate(examples):
        encoded = evaluator.encoder.encode(checked, example)
        ids = torch.tensor([encoded.before[3:]])  # the text after the virtual tokens
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        words = [evaluator.encoder.word_ids(w[0], encoded.text_before) for w in checked.verbalizer.words.values()]
        theirs = [float(log_probs[list(w)].sum()) for w in words]
        np.testing.assert_allclose(theirs, ours[e], rtol=1e-4, atol=1e-4)


def test_soft_slots_after_text_are_refused_naming_the_fix(tiny_gpt2_lm, tmp_path) -> None:
    prompt = _soft_prompt("{sentence}[V*2] It was[P]", tiny_gpt2_lm)
    with pytest.raises(TemplateError, match="all come first"):
        export_peft(prompt, tmp_path, tiny_gpt2_lm)


def test_masked_lm_and_bos_models_are_refused(tiny_masked_lm, tiny_causal_lm, tmp_path) -> None:
    with pytest.raises(ModelError, match="causal LMs"):
        export_peft(_soft_prompt("[V*2]{sentence} It was[P]", tiny_masked_lm), tmp_path, tiny_masked_lm)
    with pytest.raises(ModelError, match="PEFT prepends virtual tokens before it"):
        export_peft(_soft_prompt("[V*2]{sentence} It was[P]", tiny_causal_lm), tmp_path, tiny_causal_lm)


def test_cli_exports_a_saved_prompt(tiny_gpt2_lm, tmp_path, monkeypatch) -> None:
    tiny_gpt2_lm.model.save_pretrained(tmp_path / "model")
    tiny_gpt2_lm.tokenizer.save_pretrained(tmp_path / "model")
    _soft_prompt("[V*2]{sentence} It was[P]", tiny_gpt2_lm).save(tmp_path / "run")
    assert main(["export-peft", "--prompt", str(tmp_path / "run"), "--model", str(tmp_path / "model"),
                 "--out", str(tmp_path / "adapter")]) == 0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
