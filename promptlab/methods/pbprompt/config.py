"""The `pbprompt:` params block (torch-free: validating params.yaml imports only this)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from promptlab.methods.base_config import TrainConfig, register_method


@register_method("pbprompt", "promptlab.methods.pbprompt.method:PBPrompt")
class PBPromptConfig(TrainConfig):
    # Optimisation: CoOp-family lr/SGD; the paper's epochs/batch are unknown to us (CoCoOp's 10 epochs).
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    n_ctx: int = Field(4, ge=1)  # M prompt tokens
    ctx_init: str | None = "a photo of a"  # queries Q init (None: N(0, init_std²) and "X X X X" prompts)
    init_std: float = Field(0.02, gt=0)
    class_embedding: str = "dataset"  # e_c: dataset (its template) | clip80 | clip7 | a bank template list
    hidden_dim: int = Field(128, ge=1)  # MLP width of q(r_c)
    init_sigma: float = Field(1.0, gt=0)  # σ at init (= the prior's std: KL starts at 0)
    prior_std: float = Field(1.0, gt=0)  # p(r_c) = N(e_c, prior_std² I); the paper's reading: I
    gen_heads: int = Field(8, ge=1)
    gen_ff_mult: int = Field(4, ge=1)
    stochastic: bool = True  # False: r = μ, no KL ("P-Prompt")
    beta_kl: float = Field(1 / 16, ge=0)  # per-image ELBO weight with 16 shots
    train_samples: int = Field(1, ge=1)  # S Monte Carlo samples per training step
    transport: Literal["ct", "ot", "none"] = "ct"  # none: "B-Prompt"
    eta: float = Field(1.0, ge=0)  # η: "ELBO + CT" unweighted (docs/methods/pbprompt.md); the weight of T
    tau_ct: float = Field(0.1, gt=0)  # navigator temperature of CT
    detach_ct_weights: bool = True  # p_c enters T as fixed weights (no gradient through the classifier)
    ot_eps: float = Field(0.05, gt=0)  # entropic OT ε
    ot_iters: int = Field(50, ge=1)  # fixed Sinkhorn iterations
    inference: Literal["mean", "sample"] = "mean"
    eval_samples: int = Field(20, ge=1)  # S at evaluation (the paper: 20)
    eval_seed: int = 0
