"""The `prograd:` params block (torch-free: validating params.yaml imports only this)."""

from __future__ import annotations

from pydantic import Field

from promptlab.methods.base_config import register_method
from promptlab.methods.coop.config import CoOpConfig


@register_method("prograd", "promptlab.methods.prograd.method:ProGrad")
class ProGradConfig(CoOpConfig):  # n_ctx 4 from "a photo of a", batch 32 and lr 0.002 are CoOp's defaults
    epochs: int = Field(100, ge=1)  # ProGrad's base-to-new script (rn50_ep100); CoOp's is 200
    lam: float = Field(1.0, ge=0)  # λ, the official LOSS.LAMBDA (0.8 for some few-shot runs)
    kl_temperature: float = Field(1.0, gt=0)  # T, the official LOSS.T
