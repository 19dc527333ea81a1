"""The `linear_probe:` params block (torch-free: validating params.yaml imports only this)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from promptlab.methods.base_config import MethodConfig, register_method


@register_method("linear_probe", "promptlab.methods.linear_probe.method:LinearProbe")
class LinearProbeConfig(MethodConfig):
    c_grid: list[Annotated[float, Field(gt=0)]] = Field([1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6], min_length=1)
    search_steps: int = Field(8, ge=0)  # official --num_step
    search_span: float = Field(10.0, gt=1)  # first bracket [c*/span, c*·span]
    final: Literal["last_step", "best"] = "last_step"  # official: winner of the last refinement step
    views: Literal["all", "first"] = "first"  # training samples: view 0 of each image, or every view
    max_iter: int = Field(1000, ge=1)  # L-BFGS iterations per fit (sklearn max_iter)
    tol: float = Field(1e-4, gt=0)  # stop when max |∇J| <= tol (sklearn tol = scipy gtol)
    history_size: int = Field(10, ge=1)  # L-BFGS memory (scipy maxcor)
