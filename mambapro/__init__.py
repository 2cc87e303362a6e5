"""mambapro: a reproducible compendium for MambaPro (AAAI 2025), multi-modal object ReID with Mamba Aggregation and
Synergistic Prompt.  Importing the package never needs mamba-ssm or a GPU."""

from mambapro.config import MODALITIES, Config, resolve_config

__all__ = ["MODALITIES", "Config", "resolve_config"]
__version__ = "0.1.0"
