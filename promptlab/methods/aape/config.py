"""The `aape:` params block (torch-free: validating params.yaml imports only this)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from promptlab.methods.base_config import TrainConfig, register_method


@register_method("aape", "promptlab.methods.aape.method:AAPE")
class AAPEConfig(TrainConfig):
    epochs: int = Field(10, ge=1)
    lam: float = Field(1.0, ge=0)  # λ, distillation weight
    mu: float = Field(1.0, ge=0)  # μ, reward weight
    distill: Literal["l2", "cos"] = "l2"
    reward: Literal["contrastive", "score"] = "contrastive"
    reward_scale: float | None = Field(None, gt=0)  # ρ for the contrastive reward; None: CLIP's τ
    heads: int = Field(1, ge=1)  # attention heads of the aggregator (must divide D)
    value_proj: bool = False  # v = W_v T instead of T
    generator_reduction: int = Field(4, ge=1)  # generator hidden width = D // r
    combine: Literal["add", "concat"] = "add"
    template: str = "dataset"  # source of t_c: dataset | clip80 | clip7 | a template list of the bank
    proj_init_std: float = Field(0.0, ge=0)  # G ~ N(0, std²) for `add`; 0: zeros (concat: P = [I, 0])
