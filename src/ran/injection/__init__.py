"""The three ways the reservoir state re-enters the model, registered by name."""

from ran.errors import ConfigError
from ran.injection.additive import AdditiveInjector
from ran.injection.base import Injector
from ran.injection.kv import KVInjector
from ran.injection.prefix import PrefixInjector

INJECTION_MODES: dict[str, type[Injector]] = {
    cls.mode: cls for cls in (KVInjector, PrefixInjector, AdditiveInjector)
}


def injector_class(mode: str) -> type[Injector]:
    if mode not in INJECTION_MODES:
        raise ConfigError(f"unknown mode '{mode}': choose one of {', '.join(INJECTION_MODES)}")
    return INJECTION_MODES[mode]


__all__ = ["INJECTION_MODES", "AdditiveInjector", "Injector", "KVInjector", "PrefixInjector", "injector_class"]
