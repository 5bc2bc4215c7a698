"""Where the parts RAN touches live in each supported Hugging Face architecture.

Adding an architecture is one row: the dotted path of its decoder-layer list and the attribute of the
attention module inside a layer. The attention module must dispatch through transformers'
``ALL_ATTENTION_FUNCTIONS`` (the functional attention interface) and carry ``layer_idx``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedModel

from ran.errors import ConfigError


@dataclass(frozen=True)
class ArchitectureSpec:
    layers: str  # dotted path from the causal-LM module to the nn.ModuleList of decoder layers
    attention: str  # attribute of a decoder layer holding its self-attention module


ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "gpt2": ArchitectureSpec(layers="transformer.h", attention="attn"),
    "llama": ArchitectureSpec(layers="model.layers", attention="self_attn"),
    "mistral": ArchitectureSpec(layers="model.layers", attention="self_attn"),
    "qwen2": ArchitectureSpec(layers="model.layers", attention="self_attn"),
    "qwen3": ArchitectureSpec(layers="model.layers", attention="self_attn"),
}

SUPPORTED_ATTENTION = ("sdpa", "eager")


@dataclass(frozen=True)
class ModelGeometry:
    """The sizes of a wrapped model that the injection modes need."""

    model_type: str
    n_layers: int
    hidden_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int


def architecture_of(model: PreTrainedModel) -> ArchitectureSpec:
    model_type = model.config.model_type
    if model_type not in ARCHITECTURES:
        raise ConfigError(
            f"unsupported architecture '{model_type}': supported are {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[model_type]


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    module: nn.Module = model
    for part in architecture_of(model).layers.split("."):
        module = getattr(module, part)
    return module  # type: ignore[return-value]


def attention_module(model: PreTrainedModel, layer: int) -> nn.Module:
    return getattr(decoder_layers(model)[layer], architecture_of(model).attention)


def geometry_of(model: PreTrainedModel) -> ModelGeometry:
    config = model.config
    architecture_of(model)  # refuses unsupported architectures first
    n_heads = config.num_attention_heads
    hidden = config.hidden_size
    head_dim = getattr(config, "head_dim", None) or hidden // n_heads
    n_kv_heads = getattr(config, "num_key_value_heads", None) or n_heads
    return ModelGeometry(config.model_type, config.num_hidden_layers, hidden, n_heads, n_kv_heads, head_dim)
