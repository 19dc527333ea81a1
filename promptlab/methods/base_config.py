"""The method registry and the shared params blocks. Torch-free: validating params.yaml imports this and
every method's config.py, never a method's torch code.

One registration binds a method's three names: the decorator on its params block

    @register_method("coop", "promptlab.methods.coop.method:CoOp")
    class CoOpConfig(TrainConfig): ...

says that params.yaml's `coop:` section is validated by CoOpConfig, that `methods: [coop]` trains the class
CoOp, and that the method lives in the folder promptlab/methods/coop/ (config.py + method.py; the run stage of
a method depends on its folder). The class gets `name` and `Config` from here when it is defined.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from promptlab.schema import StrictModel


class MethodConfig(StrictModel):
    """Base of a method's params block."""


class TrainConfig(MethodConfig):
    """Optimisation settings every trained method carries (the official repos' shared defaults)."""

    epochs: int = Field(200, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.002, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: int = Field(1, ge=0)  # constant-lr warm-up, then cosine (Dassl's ConstantWarmupScheduler)
    warmup_lr: float = Field(1e-5, gt=0)


@dataclass(frozen=True)
class MethodSpec:
    name: str  # params section and `methods` entry
    config: type[MethodConfig]  # its params block
    target: str  # "promptlab.methods.<name>.method:<Class>"

    def load(self) -> type:
        """The method class (imports its torch code)."""
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


_SPECS: dict[str, MethodSpec] = {}
_BY_TARGET: dict[str, MethodSpec] = {}


def register_method(name: str, target: str):
    """Class decorator for a params block: see the module docstring."""

    def bind(config: type[MethodConfig]) -> type[MethodConfig]:
        package = f"promptlab.methods.{name}."
        if not (config.__module__.startswith(package) and target.startswith(package)):
            raise ValueError(f"method {name!r} must live in promptlab/methods/{name}/ (config {config.__module__}, "
                             f"class {target})")
        if name in _SPECS and _SPECS[name].config is not config:
            raise ValueError(f"method {name!r} is registered twice")
        _SPECS[name] = _BY_TARGET[target] = MethodSpec(name, config, target)
        return config

    return bind


def _discover() -> None:
    """Import every method folder's config.py (each registers itself), in name order."""
    if getattr(_discover, "done", False):
        return
    _discover.done = True
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.ispkg:
            importlib.import_module(f"promptlab.methods.{info.name}.config")


def methods() -> dict[str, MethodSpec]:
    """Every registered method by name (sorted)."""
    _discover()
    return dict(sorted(_SPECS.items()))


def spec_for_class(cls: type) -> MethodSpec | None:
    """The registration of a method class, or None for an unregistered helper class."""
    _discover()
    return _BY_TARGET.get(f"{cls.__module__}:{cls.__qualname__}")
