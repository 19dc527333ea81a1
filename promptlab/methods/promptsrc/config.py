"""PromptSRC's params block (torch-free)."""

from __future__ import annotations

from pydantic import Field

from promptlab.methods.base_config import register_method
from promptlab.methods.ivlp.config import IVLPConfig


@register_method("promptsrc", "promptlab.methods.promptsrc.method:PromptSRC")
class PromptSRCConfig(IVLPConfig):
    """The official base-to-new config (vit_b16_c2_ep20_batch4_4+4ctx): IVLP prompts 4 + 4, depth 9, lr 0.0025,
    20 epochs; cross-dataset: depth 3, GPA μ 6, σ 10; few-shot: 50 epochs, μ = σ = 30."""

    text_loss_weight: float = Field(25.0, ge=0)  # λ1: L1(prompted text features, frozen teacher)
    image_loss_weight: float = Field(10.0, ge=0)  # λ2: L1(prompted image features, frozen image features)
    kl_weight: float = Field(1.0, ge=0)  # λ3: KL(zero-shot logits ‖ prompted logits)
    kl_temperature: float = Field(1.0, gt=0)
    gpa: bool = True  # Gaussian prompt aggregation over epochs; False: the last epoch's prompts
    gpa_mean: float = 15.0  # μ, in epochs counted from 1
    gpa_std: float = Field(1.0, gt=0)  # σ
