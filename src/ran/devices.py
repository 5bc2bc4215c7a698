"""Where a model runs: ``--device auto|cpu|cuda|cuda:N`` and ``--dtype auto|float32|bfloat16|float16``.

``auto`` picks CUDA when it is present (else the CPU), and bfloat16 on CUDA, float32 on the CPU. The
reservoir and its state stay float32 whatever the model's dtype (the recurrence is cheap, and its
long-run behaviour should not depend on the model's precision); the readout's output is cast to the
model's dtype where it enters the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ran.errors import ConfigError

DEVICES = "auto, cpu, cuda or cuda:N"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype

    def to_dict(self) -> dict[str, str]:
        return {"device": str(self.device), "dtype": str(self.dtype).removeprefix("torch.")}


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """A checked device: refuses unknown names, CUDA without CUDA, and GPU indices that do not exist."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise ConfigError(f"unknown device '{name}': use {DEVICES}")
    if not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but this machine has no CUDA GPU (torch "
                          f"{torch.__version__}): use --device cpu or auto")
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"device '{name}' does not exist: this machine has {count} CUDA GPU(s), "
                          f"cuda:0..cuda:{count - 1}")
    return torch.device("cuda", index)


def resolve_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """A checked dtype for ``device``: float16 is refused on the CPU, bfloat16 on GPUs without it."""
    if isinstance(name, torch.dtype):
        dtype = name
    else:
        name = (name or "auto").strip().lower()
        if name == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        if name not in DTYPES:
            raise ConfigError(f"unknown dtype '{name}': choose one of {', '.join(DTYPE_CHOICES)}")
        dtype = DTYPES[name]
    if dtype not in DTYPES.values():
        raise ConfigError(f"dtype {dtype} is not supported: choose one of {', '.join(DTYPES)}")
    if dtype == torch.float16 and device.type == "cpu":
        # CPU kernels for half precision are slow or missing and its range overflows on large activations
        # (SmolLM2's layer-15 activations reach thousands): refuse rather than give silently wrong numbers.
        raise ConfigError("float16 on the CPU is refused: half-precision CPU kernels are slow or missing and "
                          "overflow on large activations; use float32 (or bfloat16)")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{torch.cuda.get_device_name(device)} has no bfloat16 support: use float16 or float32")
    return dtype


def resolve(device: str | torch.device | None = "auto", dtype: str | torch.dtype | None = "auto") -> Placement:
    resolved = resolve_device(device)
    return Placement(resolved, resolve_dtype(dtype, resolved))


def available_devices() -> list[str]:
    """The devices the device tests run on: the CPU, and the first GPU when there is one."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
