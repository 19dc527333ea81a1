"""The `cocoop:` params block (torch-free: validating params.yaml imports only this)."""

from __future__ import annotations

from pydantic import Field

from promptlab.methods.base_config import register_method
from promptlab.methods.coop.config import CoOpConfig


@register_method("cocoop", "promptlab.methods.cocoop.method:CoCoOp")
class CoCoOpConfig(CoOpConfig):
    # The paper's base-to-new settings. batch_size 1 is the original; larger batches work (one text-encoder
    # call covers many images: a clear gain on a GPU, a small one on CPU) at more memory per step.
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(1, ge=1)
    lr: float = Field(0.002, gt=0)
    chunk_size: int = Field(8192, ge=1)  # max (image, class) prompts per text-encoder call (memory bound)
