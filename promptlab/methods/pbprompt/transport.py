"""Transport distances between two weighted point sets, batched: pure functions on tensors (no parameters).

Used by pbprompt (docs/methods/pbprompt.md, "our reading" of the transport) between an image's patch tokens u_1..u_P (source, weights
a_m) and the prompt-token outputs g_1..g_N of all classes (target, weights b_n), with the cost
c(u, g) = 1 − cos(u, g). Every function works on a batch of B independent problems.

Conditional transport (Zheng & Zhou, NeurIPS 2021), bidirectional, with a softmax "navigator" at temperature τ:
    π(g_n | u_m) = b_n exp(cos_mn/τ) / Σ_n' b_n' exp(cos_mn'/τ)          (forward: patch -> tokens)
    π(u_m | g_n) = exp(cos_mn/τ) / Σ_m' exp(cos_m'n/τ)                    (backward: token -> patches)
    CT = Σ_m a_m Σ_n π(g_n|u_m) c_mn + Σ_n b_n Σ_m π(u_m|g_n) c_mn
(our reading uses uniform patch weights a_m = 1/P, and the backward conditional then needs no a_m.)

Entropic optimal transport (Cuturi 2013), solved by Sinkhorn in the log domain for stability at small ε:
    P* = argmin_{P ∈ U(a, b)} ⟨P, C⟩ − ε H(P),   log P_mn = −C_mn/ε + f_m + g_n
    f ← log a − LSE_n(−C/ε + g),   g ← log b − LSE_m(−C/ε + f)          (fixed number of iterations)
    OT = ⟨P, C⟩ (the transport cost of the regularised plan; gradients flow through the unrolled iterations,
    so autograd memory grows with iters · B · P · N).
"""

from __future__ import annotations

import math

import torch


def conditional_transport(cos: torch.Tensor, log_b: torch.Tensor, tau: float) -> torch.Tensor:
    """Bidirectional CT with uniform source weights 1/P: cos [B, P, N] similarities, log_b [B, N] log target
    weights (Σ_n b_n = 1; log space so tiny class probabilities stay finite) -> CT [B]."""
    cost = 1.0 - cos  # [B, P, N]
    logits = cos / tau
    fwd = torch.softmax(logits + log_b.unsqueeze(1), dim=2)  # π(g_n|u_m): rows sum to 1 over n
    bwd = torch.softmax(logits, dim=1)  # π(u_m|g_n): columns sum to 1 over m
    forward = (fwd * cost).sum(dim=2).mean(dim=1)  # Σ_m (1/P) Σ_n π(g|u) c
    backward = (log_b.exp() * (bwd * cost).sum(dim=1)).sum(dim=1)  # Σ_n b_n Σ_m π(u|g) c
    return forward + backward


def sinkhorn_log(cost: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, eps: float,
                 iters: int) -> torch.Tensor:
    """Entropic OT plan by log-domain Sinkhorn: cost [B, P, N], log_a [B, P], log_b [B, N] (log marginals,
    each summing to 1) -> plan [B, P, N]. Runs in float32 at least (float64 stays float64)."""
    dtype = torch.promote_types(cost.dtype, torch.float32)
    log_k = -cost.to(dtype) / eps  # [B, P, N]
    log_a, log_b = log_a.to(dtype), log_b.to(dtype)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    for _ in range(iters):
        f = log_a - torch.logsumexp(log_k + g.unsqueeze(1), dim=2)  # rows now sum to a
        g = log_b - torch.logsumexp(log_k + f.unsqueeze(2), dim=1)  # columns now sum to b (exact at exit)
    return torch.exp(log_k + f.unsqueeze(2) + g.unsqueeze(1))


def entropic_ot(cos: torch.Tensor, log_b: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """⟨P*, 1 − cos⟩ with uniform source weights 1/P: cos [B, P, N], log_b [B, N] -> OT cost [B]."""
    cost = 1.0 - cos
    log_a = torch.full(cos.shape[:2], -math.log(cos.shape[1]), dtype=cos.dtype, device=cos.device)
    plan = sinkhorn_log(cost, log_a, log_b, eps, iters)
    return (plan * cost.to(plan.dtype)).sum(dim=(1, 2)).to(cos.dtype)
