"""The `kgcoop:` params block (torch-free: validating params.yaml imports only this)."""

from __future__ import annotations

from pydantic import Field

from promptlab.methods.base_config import register_method
from promptlab.methods.coop.config import CoOpConfig


@register_method("kgcoop", "promptlab.methods.kgcoop.method:KgCoOp")
class KgCoOpConfig(CoOpConfig):  # n_ctx 4 from "a photo of a" and lr 0.002 are CoOp's defaults
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(100, ge=1)
    lam: float = Field(8.0, ge=0)  # λ, the official TRAINER.COOP.W
