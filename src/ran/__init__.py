"""ran: the Reservoir Attention Network.

A fixed random echo-state reservoir beside one layer of a pretrained causal LM gives it state that
survives between forward passes; only a small readout (plus optional LoRA) is trained.
"""

from ran.errors import ArtifactError, ConfigError, ModelLoadError, RanError
from ran.reservoir import Reservoir, ReservoirConfig

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "ConfigError",
    "ModelLoadError",
    "RanError",
    "Reservoir",
    "ReservoirConfig",
    "__version__",
]
