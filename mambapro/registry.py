"""One registry per kind of interchangeable part: the one table its choices and facts are read from.

Each entry is registered where the part is implemented (``AGGREGATORS.register(name, factory, scan=..., ...)``
in :mod:`mambapro.aggregation`), the way timm's ``register_model`` builds ``list_models()`` from one table.  The
configuration's choices (:func:`mambapro.config.validate`), hence the presets and profiles, the model builders, the
engine and the complexity counter read the registries; nothing else lists the kinds.

* ``AGGREGATORS`` (``aggregation.kind``, in ``mambapro/aggregation.py``): block factory; ``scan`` (runs the
  selective scan), ``stacked`` (``num_blocks`` applies), ``paper`` ((table, row label) pairs of Tables 6 / 11 in
  :mod:`mambapro.paper_results`; () states that it has none).
* ``PROMPTS`` (``prompt.kind``, ``mambapro/prompts.py``): module class; ``rp_blocks`` (RP blocks per layer).
* ``ADAPTERS`` (``adapter.kind``, ``mambapro/adapters.py``): factory; ``position`` (fixed place, None: the
  configured one), ``block_input``; ``ADAPTER_POSITIONS`` (``adapter.position``) and ``ACTIVATIONS``
  (``adapter.activation``, ``prompt.activation``) are registered there too.
* ``SCAN_BACKENDS`` (``aggregation.scan_backend``, ``mambapro/scan.py``): scan function; ``traced`` (the autograd
  Function fvcore sees; None: not counted).
* ``DATASETS`` (``data.dataset``, ``mambapro/data/readers.py``): reader; ``object`` ("person" / "vehicle"),
  ``folder`` (under ``data.root``), ``modalities``, ``image_size`` (the paper's (H, W)), ``protocol``.

This module imports nothing of the package (arrows point down to it); the registering modules import it, and
``mambapro/__init__.py`` imports each of them once, so every registry is full whenever ``mambapro`` is imported (as
timm's ``timm/models/__init__.py`` imports its model files).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACTIVATIONS", "ADAPTERS", "ADAPTER_POSITIONS", "AGGREGATORS", "DATASETS", "PROMPTS", "REGISTRIES",
           "SCAN_BACKENDS", "Entry", "Registry", "RegistryError"]


_DECORATE = object()  # register()'s default: used as a decorator


class RegistryError(ValueError):
    """An unknown or doubly registered name (the message names the registry, the value and the allowed ones)."""


@dataclass(frozen=True)
class Entry:
    """One registered part: its name, the object implementing it (a class, function or None) and its facts."""

    name: str
    obj: Any = None
    facts: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Names of one kind (in registration order) with their implementation and facts.

    ``key`` is the configuration key the names are the choices of; ``home`` the file that registers them (named in
    errors); ``required`` the facts every entry must state (None is a statement).
    Iterating, ``in`` and ``len`` see the names, so a registry can stand wherever a tuple of choices did."""

    def __init__(self, key: str, home: str, required: tuple[str, ...] = ()):
        self.key, self.home, self.required = key, home, tuple(required)
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, obj: Any = _DECORATE, **facts: Any) -> Any:
        """Register ``obj`` (None for a kind without a module, such as "none") under ``name`` with ``facts``;
        without ``obj``, a decorator registering what it wraps.  A name registered twice is an error (remove it
        first with :meth:`unregister`)."""
        if obj is _DECORATE:
            def decorate(target: Any) -> Any:
                self.register(name, target, **facts)
                return target
            return decorate
        if name in self._entries:
            raise RegistryError(f"{self.key}: {name!r} is registered twice ({self.home} and the new entry); "
                                f"unregister the old entry first")
        missing = [k for k in self.required if k not in facts]
        if missing:
            raise RegistryError(f"{self.key}: the entry {name!r} lacks the fact(s) {', '.join(missing)}; every entry "
                                f"states {', '.join(self.required)} (see {self.home})")
        self._entries[name] = Entry(name, obj, dict(facts))
        return obj

    def unregister(self, name: str) -> Entry:
        """Remove and return the entry of ``name`` (for throw-away entries in tests)."""
        self.get(name)
        return self._entries.pop(name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries.values())

    def get(self, name: str) -> Entry:
        """The entry of ``name``; an unknown name is a :class:`RegistryError` listing the allowed ones."""
        if name not in self._entries:
            raise RegistryError(f"{self.key} = {name!r} is not one of: {', '.join(self._entries)} (registered in "
                                f"{self.home}; fix the value or register it there)")
        return self._entries[name]

    def fact(self, name: str, key: str) -> Any:
        """The fact ``key`` of ``name``; a missing fact is a :class:`RegistryError` listing the entry's facts."""
        facts = self.get(name).facts
        if key not in facts:
            raise RegistryError(f"{self.key} = {name!r} has no fact {key!r} (it has: {', '.join(facts) or 'none'}); "
                                f"add it where {name!r} is registered in {self.home}")
        return facts[key]

    def where(self, **facts: Any) -> tuple[str, ...]:
        """Names whose facts equal every given one, e.g. ``AGGREGATORS.where(scan=True)``."""
        return tuple(e.name for e in self.entries() if all(e.facts.get(k) == v for k, v in facts.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.key!r}: {', '.join(self._entries)})"


AGGREGATORS = Registry("aggregation.kind", "mambapro/aggregation.py", ("scan", "stacked", "paper"))
PROMPTS = Registry("prompt.kind", "mambapro/prompts.py", ("rp_blocks",))
ADAPTERS = Registry("adapter.kind", "mambapro/adapters.py", ("position", "block_input"))
SCAN_BACKENDS = Registry("aggregation.scan_backend", "mambapro/scan.py", ("traced",))
ADAPTER_POSITIONS = Registry("adapter.position", "mambapro/adapters.py")
ACTIVATIONS = Registry("adapter.activation / prompt.activation", "mambapro/adapters.py")
DATASETS = Registry("data.dataset", "mambapro/data/readers.py",
                    ("object", "folder", "modalities", "image_size", "protocol"))
REGISTRIES = (AGGREGATORS, PROMPTS, ADAPTERS, ADAPTER_POSITIONS, ACTIVATIONS, SCAN_BACKENDS, DATASETS)
