"""Every method's params block: the pydantic schema of its section in params.yaml (`coop:`, `cocoop:`, ...).

Kept apart from the methods' torch code, and outside the promptlab.methods package (whose registry imports every
method), so that validating params.yaml, which every stage does first, imports neither torch nor open_clip
(about 7 s per process on a 2-core machine): the data, description and report stages never touch a model. Each
method class points at its block (`CoOp.Config is CoOpConfig`); METHOD_CONFIGS lists the blocks under the names
of `promptlab.methods.REGISTRY` (a test keeps the two equal).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from promptlab.config import StrictModel


class MethodConfig(StrictModel):
    """Base of a method's params block."""


class TrainConfig(MethodConfig):
    """Optimisation settings every trained method carries (the official repos' shared defaults)."""

    epochs: int = Field(200, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.002, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: int = Field(1, ge=0)  # constant-lr warm-up, then cosine (Dassl's ConstantWarmupScheduler)
    warmup_lr: float = Field(1e-5, gt=0)


class ZeroShotConfig(MethodConfig):
    template: str = "dataset"  # dataset | clip80 | clip7 | a template list of the prompt bank


class CoOpConfig(TrainConfig):
    n_ctx: int = Field(4, ge=1)
    ctx_init: str | None = "a photo of a"
    class_specific: bool = False
    class_token_position: Literal["end", "middle", "front"] = "end"
    init_std: float = Field(0.02, gt=0)


class CoCoOpConfig(CoOpConfig):
    # The paper's base-to-new settings. batch_size 1 is the original; larger batches work (one text-encoder
    # call covers many images: a clear gain on a GPU, a small one on CPU) at more memory per step.
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(1, ge=1)
    lr: float = Field(0.002, gt=0)
    chunk_size: int = Field(8192, ge=1)  # max (image, class) prompts per text-encoder call (memory bound)


class CuPLConfig(MethodConfig):
    with_templates: bool = False


class KgCoOpConfig(CoOpConfig):  # n_ctx 4 from "a photo of a" and lr 0.002 are CoOp's defaults
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(100, ge=1)
    lam: float = Field(8.0, ge=0)  # λ, the official TRAINER.COOP.W


class ProGradConfig(CoOpConfig):  # n_ctx 4 from "a photo of a", batch 32 and lr 0.002 are CoOp's defaults
    epochs: int = Field(100, ge=1)  # ProGrad's base-to-new script (rn50_ep100); CoOp's is 200
    lam: float = Field(1.0, ge=0)  # λ, the official LOSS.LAMBDA (0.8 for some few-shot runs)
    kl_temperature: float = Field(1.0, gt=0)  # T, the official LOSS.T


class LinearProbeConfig(MethodConfig):
    c_grid: list[Annotated[float, Field(gt=0)]] = Field([1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6], min_length=1)
    search_steps: int = Field(8, ge=0)  # official --num_step
    search_span: float = Field(10.0, gt=1)  # first bracket [c*/span, c*·span]
    final: Literal["last_step", "best"] = "last_step"  # official: winner of the last refinement step
    views: Literal["all", "first"] = "first"  # training samples: view 0 of each image, or every view
    max_iter: int = Field(1000, ge=1)  # L-BFGS iterations per fit (sklearn max_iter)
    tol: float = Field(1e-4, gt=0)  # stop when max |∇J| <= tol (sklearn tol = scipy gtol)
    history_size: int = Field(10, ge=1)  # L-BFGS memory (scipy maxcor)


class DualViewConfig(CoOpConfig):  # n_ctx 4 from "a photo of a", batch 32, lr 0.002, 200 epochs: CoOp's
    hand_view: str = "dataset"  # T^h: dataset (its template) | clip80 | clip7 | a template list of the bank
    lam_mi: float = Field(1.0, ge=0)  # weight of the InfoNCE (mutual-information) term
    tau_mi: float = Field(0.07, gt=0)  # InfoNCE temperature
    visual_aug: Literal["prototype", "mixup", "none"] = "mixup"
    beta: float = Field(1.0, ge=0)  # β: prototype strength in t̃_c = normalise(t^s_c + β·p_c)
    lam_proto: float = Field(1.0, ge=0)  # weight of the prototype-injected CE term
    mixup_alpha: float = Field(1.0, gt=0)  # α of Beta(α, α)
    lam_mix: float = Field(1.0, ge=0)  # weight of the intra-class mixup CE term


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
    eta: float = Field(1.0, ge=0)  # η: "ELBO + CT" unweighted (METHODS.md); the weight of T
    tau_ct: float = Field(0.1, gt=0)  # navigator temperature of CT
    detach_ct_weights: bool = True  # p_c enters T as fixed weights (no gradient through the classifier)
    ot_eps: float = Field(0.05, gt=0)  # entropic OT ε
    ot_iters: int = Field(50, ge=1)  # fixed Sinkhorn iterations
    inference: Literal["mean", "sample"] = "mean"
    eval_samples: int = Field(20, ge=1)  # S at evaluation (the paper: 20)
    eval_seed: int = 0


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


METHOD_CONFIGS: dict[str, type[MethodConfig]] = {
    "zeroshot": ZeroShotConfig,
    "coop": CoOpConfig,
    "cocoop": CoCoOpConfig,
    "cupl": CuPLConfig,
    "kgcoop": KgCoOpConfig,
    "prograd": ProGradConfig,
    "linear_probe": LinearProbeConfig,
    "dualview": DualViewConfig,
    "pbprompt": PBPromptConfig,
    "aape": AAPEConfig,
}
