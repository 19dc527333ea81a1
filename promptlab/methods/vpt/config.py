"""VPT's params block (torch-free): deep vision prompts only, text = the dataset's template, frozen."""

from __future__ import annotations

from pydantic import Field

from promptlab.methods.base_config import register_method
from promptlab.methods.ivlp.config import DeepPromptConfig


@register_method("vpt", "promptlab.methods.vpt.method:VPT")
class VPTConfig(DeepPromptConfig):
    """The MaPLe repo's VPT config (vit_b16_c2_ep5_batch4_4): 8 vision tokens, depth 12, lr 0.0025, 5 epochs."""

    epochs: int = Field(5, ge=1)
    lr: float = Field(0.0025, gt=0)
    n_ctx_vision: int = Field(8, ge=1)
    depth_vision: int = Field(12, ge=1)
