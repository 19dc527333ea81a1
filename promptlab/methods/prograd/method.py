"""ProGrad: Prompt-aligned Gradient for Prompt Tuning (Zhu et al., ICCV 2023).

CoOp (see coop.py) whose update keeps only the part of the cross-entropy gradient that does not conflict with
the "general knowledge" direction given by zero-shot CLIP. Per step, with ctx the learned context [M, w]
(or [C, M, w] class-specific) flattened to a vector:

    logits   [B, C] = τ·f(x)·Wᵀ                (the prompt's prediction; W from the CoOp prompt)
    zs       [B, C] = τ·f(x)·(W^hand)ᵀ          (zero-shot CLIP, classes.hand_features, frozen, no grad)
    g_ce     = ∂ CE(logits, y) / ∂ctx
    g_kl     = ∂ KL(p_zs ‖ p_prompt) / ∂ctx,    p_zs = softmax(zs/T), p_prompt = softmax(logits/T)
               KL(p ‖ q) = Σ_c p_c (log p_c − log q_c), averaged over the batch
    g        = g_ce − λ·(⟨g_ce, g_kl⟩/‖g_kl‖²)·g_kl   if ⟨g_ce, g_kl⟩ < 0,   else g_ce

g is written into ctx.grad and the loop's optimiser steps on it. The returned loss is the CE (what is being
minimised; the KL only steers the direction), as the official trainer logs xe_loss.

Facts of the official code (BeierZhu/Prompt-align, trainers/prograd.py and Dassl's
prograd_backward_and_update) and how we match them:
- its "KL" is −Σ p_zs log p_prompt · T² (cross-entropy to the teacher): it differs from KL(p_zs ‖ p_prompt)
  by the teacher's entropy, a constant, so the gradient is the same up to the factor T²; the projection is
  invariant to any positive scale of g_kl, so g is identical. We compute the true KL (docs/methods/baselines.md, "prograd");
- the projection is a − λ·⟨a, b̂⟩·b̂ with b̂ = b/‖b‖, the same formula; it is applied per parameter tensor,
  and CoOp has a single one (ctx), so per-tensor = global here;
- the teacher uses the dataset's hand-crafted template (its own CUSTOM_TEMPLATES, which differ from CoOp's
  for pets, flowers, aircraft, food and DTD, e.g. "a type of pet, a photo of a {}.", "a texture of {}.");
  we use the project's hand template (classes.hand_features, CoOp's table) so all methods share one zero-shot teacher.

Our reading of the settings: ProGrad's base-to-new script trains with its rn50_ep100 config (batch 32,
lr 0.002, 100 epochs, constant warm-up 1 epoch at 1e-5, cosine, LOSS.T 1.0, LAMBDA 1.0) and 16 context
tokens whose last ones are initialised from the dataset template's words, the rest zero vectors. We keep
CoOp's base-to-new prompt instead (4 tokens from "a photo of a", so untrained ProGrad = zero-shot, like CoOp
and KgCoOp) and take batch 32, lr 0.002, 100 epochs from ProGrad's own base-to-new script (CoOp's is 200);
lam and kl_temperature are exposed.
Computation: the two gradients come from one forward pass (torch.autograd.grad, graph retained for the
first); the projection is done in float64 so that ⟨g, g_kl⟩ is 0 to rounding when λ = 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from promptlab.methods.prograd.config import ProGradConfig
from promptlab.methods.base import Batch
from promptlab.methods.coop.method import CoOp
from promptlab.prompts.bank import ClassSet


def project_conflicting(g_ce: torch.Tensor, g_kl: torch.Tensor, lam: float) -> torch.Tensor:
    """ProGrad's rule on flat gradients g_ce, g_kl [P] -> g [P] (float64 inside, dtype of g_ce out).

    Conflict (⟨g_ce, g_kl⟩ < 0): remove λ times g_ce's component along g_kl. Otherwise g_ce unchanged
    (returned as is, bit for bit). A conflict implies g_kl ≠ 0, so the division is safe."""
    a, b = g_ce.double(), g_kl.double()
    dot = torch.dot(a, b)
    if dot >= 0:
        return g_ce
    b_hat = b / b.norm()  # [P] unit direction of the zero-shot knowledge
    return (a - lam * torch.dot(a, b_hat) * b_hat).to(g_ce.dtype)


class ProGrad(CoOp):

    def zero_shot_logits(self, batch: Batch, classes: ClassSet) -> torch.Tensor:
        """[B, C] = τ·f(x)·(W^hand)ᵀ: the frozen zero-shot teacher (never part of any graph)."""
        hand = classes.hand_features.to(device=batch.features.device, dtype=batch.features.dtype)
        return (self.clip.logit_scale * batch.features @ hand.t()).detach()

    def kl_to_zero_shot(self, logits: torch.Tensor, zs_logits: torch.Tensor) -> torch.Tensor:
        """KL(p_zs ‖ p_prompt) = Σ_c p_zs (log p_zs − log p_prompt), mean over the batch; inputs [B, C]."""
        t = self.cfg.kl_temperature
        log_p_zs = F.log_softmax(zs_logits / t, dim=-1)  # [B, C]
        log_p_prompt = F.log_softmax(logits / t, dim=-1)  # [B, C]
        return (log_p_zs.exp() * (log_p_zs - log_p_prompt)).sum(dim=-1).mean()

    def gradients(self, batch: Batch, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                     torch.Tensor]:
        """One forward pass -> (CE loss, logits [B, C], g_ce, g_kl), gradients shaped like ctx."""
        logits = self.logits(batch, classes)  # [B, C], graph down to ctx
        ce = F.cross_entropy(logits, batch.labels)
        kl = self.kl_to_zero_shot(logits, self.zero_shot_logits(batch, classes))
        (g_kl,) = torch.autograd.grad(kl, self.ctx, retain_graph=True)  # graph kept for the CE pass
        (g_ce,) = torch.autograd.grad(ce, self.ctx)
        return ce, logits, g_ce, g_kl

    def backward(self, batch: Batch, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill ctx.grad with the projected update g; returns (CE loss, logits), both detached."""
        ce, logits, g_ce, g_kl = self.gradients(batch, classes)
        g = project_conflicting(g_ce.flatten(), g_kl.flatten(), self.cfg.lam).view_as(self.ctx)
        if self.ctx.grad is None:
            self.ctx.grad = g.clone()
        else:  # accumulate like loss.backward() would
            self.ctx.grad += g
        return ce.detach(), logits.detach()
