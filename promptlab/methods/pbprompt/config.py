"""The `pbprompt:` params block (torch-free: validating params.yaml imports only this).

Every open choice of our reading is a key here; the defaults are the reading measured best on the default
world (method.py's docstring gives the numbers and the ablations)."""

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
    # front: [SOS][CLASS][t_c][.] so the prompt-token outputs (CLIP's text attention is causal) see the class
    # name before patches are transported onto them; end: [SOS][t_c][CLASS][.] (they see only t_c, i.e. r_c)
    class_token_position: Literal["end", "front"] = "front"
    hidden_dim: int = Field(128, ge=1)  # MLP width of q(r_c)
    prior_std: float | None = Field(None, gt=0)  # σ0 of p(r_c) = N(e_c, σ0² I); None: 1/√D (e_c is unit-norm)
    init_sigma: float | None = Field(None, gt=0)  # σ at init; None: σ0
    head_init_std: float = Field(0.01, gt=0)  # N(0, std²) init of W_μ, W_σ and the generator's W_o (none is 0)
    gen_heads: int = Field(8, ge=1)
    gen_ff_mult: int = Field(4, ge=1)
    stochastic: bool = True  # False: r = μ, no KL ("P-Prompt")
    beta_kl: float | None = Field(None, ge=0)  # KL weight; None: C/N = 1/shots, the exact per-image ELBO
    train_samples: int = Field(1, ge=1)  # S Monte Carlo samples per training step
    transport: Literal["ct", "ot", "none"] = "ct"  # none: "B-Prompt"
    eta: float = Field(0.1, ge=0)  # η, the weight of T (measured best: HM 46.01 vs 44.20 at 1.0, seeds 1-3)
    tau_ct: float = Field(0.1, gt=0)  # navigator temperature of CT
    detach_ct_weights: bool = True  # p_c enters T as fixed weights (no gradient through the classifier)
    ot_eps: float = Field(0.05, gt=0)  # entropic OT ε
    ot_iters: int = Field(50, ge=1)  # fixed Sinkhorn iterations
    inference: Literal["mean", "sample"] = "sample"  # sample: average eval_samples predictions (the paper)
    eval_samples: int = Field(20, ge=1)  # S at evaluation (the paper: 20)
    eval_seed: int = 0
