"""The `coop:` params block (torch-free: validating params.yaml imports only this)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from promptlab.methods.base_config import TrainConfig, register_method


@register_method("coop", "promptlab.methods.coop.method:CoOp")
class CoOpConfig(TrainConfig):
    n_ctx: int = Field(4, ge=1)
    ctx_init: str | None = "a photo of a"
    class_specific: bool = False
    class_token_position: Literal["end", "middle", "front"] = "end"
    init_std: float = Field(0.02, gt=0)
