"""Engine registry: name -> "module:Class", imported only when chosen (sphinx, torch and moshi are heavy).

To add an engine, subclass `base.Engine` and add one line here.
"""

from __future__ import annotations

import importlib

from ...errors import UserError
from .base import Engine, ModelSpec

ENGINES: dict[str, str] = {
    "synthetic": "yapbench.server.engines.synthetic:SyntheticEngine",
    "sphinx": "yapbench.server.engines.sphinx:SphinxEngine",
    "torch": "yapbench.server.engines.torch_engine:TorchEngine",
    "moshi": "yapbench.server.engines.moshi_engine:MoshiEngine",
}


def create_engine(name: str, spec: ModelSpec) -> Engine:
    target = ENGINES.get(name)
    if target is None:
        raise UserError(f"unknown engine {name!r} (known: {', '.join(sorted(ENGINES))})")
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UserError(f"engine {name!r} is not available here ({exc})") from None
    return getattr(module, class_name)(spec)
