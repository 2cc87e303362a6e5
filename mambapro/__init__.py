"""mambapro: a reproducible compendium for MambaPro (AAAI 2025), multi-modal object ReID with Mamba Aggregation and
Synergistic Prompt.  Importing the package never needs mamba-ssm or a GPU; it pins the CPU math libraries' code
path (:mod:`mambapro.environment`) before anything runs a kernel."""

from mambapro.environment import pin_cpu_math

pin_cpu_math()

# The package's configuration, then the modules that register the interchangeable parts (mambapro.registry),
# imported once so that every registry is full whenever the package is.
from mambapro import adapters, aggregation, prompts, scan  # noqa: E402, F401
from mambapro.config import MODALITIES, Config, resolve_config  # noqa: E402
from mambapro.data import readers  # noqa: E402, F401

__all__ = ["MODALITIES", "Config", "resolve_config"]
__version__ = "0.1.0"
