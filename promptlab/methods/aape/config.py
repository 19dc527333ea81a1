"""The `aape:` params block (torch-free: validating params.yaml imports only this).

Every open choice of our reading is a key here; the defaults are the reading measured best on the default
world (method.py's docstring gives the numbers and the ablations)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from promptlab.methods.base_config import TrainConfig, register_method


@register_method("aape", "promptlab.methods.aape.method:AAPE")
class AAPEConfig(TrainConfig):
    epochs: int = Field(10, ge=1)
    # 10x the CoOp family's 0.002: G starts at 0 and its steps scale with |a(x)|·|f| (~0.1 per dim), so at
    # 0.002 the gate barely leaves identity in 10 epochs (HM 50.51 vs 50.69 at 0.02; 0.1: 49.55)
    lr: float = Field(0.02, gt=0)
    lam: float = Field(0.1, ge=0)  # λ, distillation weight (measured: 0.1 beat 1.0 by 0.2 HM, 0 lost 1.0)
    mu: float = Field(1.0, ge=0)  # μ, reward weight
    distill: Literal["l2", "cos"] = "l2"
    reward: Literal["contrastive", "score"] = "contrastive"
    reward_scale: float | None = Field(None, gt=0)  # ρ for the contrastive reward; None: CLIP's τ
    # contrastive reward negatives: other_classes (images of the image's own class are not negatives) | all
    reward_negatives: Literal["other_classes", "all"] = "other_classes"
    heads: int = Field(1, ge=1)  # attention heads of the aggregator (must divide D)
    attn_scale: float | None = Field(None, gt=0)  # attention scores = scale · cos(q, k); None: CLIP's τ
    learn_attn_scale: bool = True  # the scale (as a log) is a learned parameter
    value_proj: bool = False  # v = W_v T instead of T
    generator_reduction: int = Field(4, ge=1)  # generator hidden width = D // r
    # gate: w_c(x) = normalise(t_c ⊙ (1 + G a(x))), class-specific | add: normalise(t_c + G a(x)) |
    # concat: normalise(P [t_c; a(x)]); add and concat move every class by the same vector
    combine: Literal["gate", "add", "concat"] = "gate"
    template: str = "dataset"  # source of t_c: dataset | clip80 | clip7 | a template list of the bank
    proj_init_std: float = Field(0.0, ge=0)  # G ~ N(0, std²) for gate/add; 0: zeros (concat: P = [I, 0])
