"""MaPLe's params block (torch-free)."""

from __future__ import annotations

from pydantic import Field

from promptlab.methods.base_config import register_method
from promptlab.methods.ivlp.config import DeepPromptConfig


@register_method("maple", "promptlab.methods.maple.method:MaPLe")
class MaPLeConfig(DeepPromptConfig):
    """The official base-to-new config (vit_b16_c2_ep5_batch4_2ctx); cross-dataset uses depth 3, lr 0.0026,
    2 epochs."""

    epochs: int = Field(5, ge=1)
    lr: float = Field(0.0035, gt=0)
    n_ctx: int = Field(2, ge=1)  # text tokens; the vision prompts are their projections (same count)
    depth: int = Field(9, ge=1)  # J in both towers: blocks 1..J-1 get deep prompts
    ctx_init: str | None = "a photo of a"
