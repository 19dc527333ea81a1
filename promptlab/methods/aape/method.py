"""AAPE: Aggregate-and-Adapt Natural Language Prompts for Downstream Generalization of CLIP
(Huang et al., NeurIPS 2024).

LLM description sentences per class are distilled into an image-conditioned prompt embedding (AAPE) that
needs no descriptions at test time. Shapes: B images, C classes, S description sentences, D joint dim.

    f(x)   [B, D]  cached L2-normalised image features;  y [B] labels
    T      [S, D]  classes.sentences (frozen, normalised), with sentence_labels [S]
    aggregator:  q = W_q f(x) [B, H, D/H],  k = W_k T [S, H, D/H],  v = T (or W_v T) [S, H, D/H]
                 α = softmax_S(κ · cos(q, k), masked to the sentences of class y_b)   [B, H, S]
                 κ = exp(log κ), learned, starting at CLIP's logit scale τ (attn_scale)
                 s(x) = concat_h Σ_S α v                                              [B, D]  the "summary"
    reward:      L_reward = ½ [CE(ρ·ŝ f̂ᵀ, I) + CE(ρ·f̂ ŝᵀ, I)] over the batch, images of the same class left
                 out of the denominators (contrastive; promptlab/methods/losses.py), or mean(1 − cos(f, s))
    generator:   a(x) = Linear(D, D/r) → ReLU → Linear(D/r, D)                         [B, D]  the AAPE
    distill:     L_distill = ‖a − sg(s)‖² (l2) or 1 − cos(a, sg(s)) (cos), batch mean
    classifier:  gate:   w_{b,c} = normalise(t_c ⊙ (1 + G a_b)),  G [D, D] learned (zero init)
                 add:    w_{b,c} = normalise(t_c + G a_b)
                 concat: w_{b,c} = normalise(P [t_c; a_b]),   P [D, 2D] learned, init [I, 0]
                 logits[b, c] = τ · f_b · w_{b,c};  t_c the frozen template feature (bank, no text encoding)
    loss = CE(logits, y) + λ·L_distill + μ·L_reward

Why these choices (each measured inert otherwise, see the tests):
- attention on cos(q, k) scaled by κ ≈ τ: sentence and image features are unit vectors, so a plain
  q·k/√(D/H) spans about ±0.09 and the softmax stays uniform (the summary is the class mean of the
  descriptions); on CLIP's logit scale the summary picks the sentences that match the image.
- the reward contrasts an image with the summaries of other classes only: with same-class images as
  negatives the two images of one class must be told apart from the same class's descriptions (its loss
  stays near log B).
- `gate` rescales each dimension of each class's template by (1 + G a(x)): the image's AAPE re-weights the
  dimensions that tell classes apart, so it changes the ranking of classes. `add` and `concat` add one vector
  u_b to every class (t'_c + u_b), which moves f·w_c by the same f·u_b for every class and can re-rank only
  through the normalisation.

Gradient paths: the reward trains only the aggregator (W_q, W_k, W_v, κ); distillation trains only the
generator (sg); CE trains the generator and G (or P). G starts at 0, so the untrained `gate` and `add` are
zero-shot CLIP and the generator's first CE gradient comes after G's first step. At inference only the
generator and G/P are used: no descriptions, no aggregator, so classes and domains without descriptions can
be scored. The aggregator is learned and saved (it is part of the method's state) but never used at test time.

The logits are computed from [B, C] matrix products without building [B, C, D] weights: for `gate`,
f·(t_c ⊙ g_b) = ((f ⊙ g) tᵀ)_bc and ‖t_c ⊙ g_b‖² = (g² (t²)ᵀ)_bc with g = 1 + G a; for `add`/`concat`,
‖t'_c + u_b‖² = ‖t'_c‖² + 2 t'_c·u_b + ‖u_b‖².

Our reading of the paper (docs/methods/aape.md): it combines AAPE with the text template inside its prompt
pipeline; we combine in the joint embedding space (no text-encoder call at all). Its "CLIP reward" is a CLIP
score between image and summary; our default makes it contrastive over the batch (ρ = CLIP's logit scale
unless reward_scale is set), reward="score" is the plain CLIP-score form. Open choices exposed as fields:
heads, attention scale and whether it learns, value projection, generator width, distance, reward negatives,
combination, template source, G's init. W_q, W_k (and W_v) start as identity maps, so the untrained summary
attends by CLIP similarity between image and sentence. Optimisation: the CoOp family's SGD, batch 32, at
lr 0.02 (10× theirs: G starts at 0 and moves slowly); the paper's epoch count is not known to us, we use
CoCoOp's 10.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from promptlab.errors import UserError
from promptlab.methods.aape.config import AAPEConfig
from promptlab.methods.base import Batch, FrozenCLIP, PromptMethod, TrainData
from promptlab.methods.losses import symmetric_info_nce
from promptlab.prompts.bank import ClassSet


class AAPE(PromptMethod):

    def __init__(self, cfg: AAPEConfig, clip: FrozenCLIP, train_classes: ClassSet):
        super().__init__(cfg, clip, train_classes)
        d = clip.embed_dim
        if d % cfg.heads:
            raise UserError(f"{self.name}.heads={cfg.heads} must divide the embedding dimension {d}")
        # W_q, W_k, W_v [D, D], identity init (see docstring); used in training only
        self.w_q, self.w_k = torch.nn.Parameter(torch.eye(d)), torch.nn.Parameter(torch.eye(d))
        self.w_v = torch.nn.Parameter(torch.eye(d)) if cfg.value_proj else None
        log_scale = torch.tensor(math.log(cfg.attn_scale or clip.logit_scale))  # log κ
        self.attn_log_scale = torch.nn.Parameter(log_scale) if cfg.learn_attn_scale else None
        self._fixed_log_scale = float(log_scale)
        hidden = max(1, d // cfg.generator_reduction)
        self.generator = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, d))
        if cfg.combine in ("gate", "add"):
            self.proj = torch.nn.Parameter(torch.randn(d, d) * cfg.proj_init_std)  # G [D, D], u = a Gᵀ
        else:
            self.proj = torch.nn.Parameter(torch.cat([torch.eye(d), torch.zeros(d, d)], dim=1))  # P [D, 2D]

    # -- aggregator (training only) ------------------------------------------------------------------------
    def attention(self, feats: torch.Tensor, labels: torch.Tensor, classes: ClassSet) -> torch.Tensor:
        """feats [B, D], labels [B] -> α [B, H, S]: each image's attention over its own class's sentences."""
        self.check_sentences(classes)
        t = classes.sentences.to(feats)  # [S, D]
        h, (b, d) = self.cfg.heads, feats.shape
        q = F.normalize((feats @ self.w_q.t()).view(b, h, d // h), dim=-1)  # [B, H, D/H]
        k = F.normalize((t @ self.w_k.t()).view(-1, h, d // h), dim=-1)  # [S, H, D/H]
        scores = self.attn_scale() * torch.einsum("bhe,she->bhs", q, k)  # [B, H, S]: κ·cos
        own = classes.sentence_labels.to(feats.device)[None, :] == labels[:, None]  # [B, S]
        if not own.any(dim=1).all():
            raise UserError(f"{self.name}: a training class has no description sentences")
        return scores.masked_fill(~own[:, None], float("-inf")).softmax(dim=-1)

    def attn_scale(self) -> torch.Tensor | float:
        """κ: learned (exp of a log parameter) or fixed."""
        if self.attn_log_scale is None:
            return math.exp(self._fixed_log_scale)
        return self.attn_log_scale.exp()

    def summary(self, feats: torch.Tensor, labels: torch.Tensor, classes: ClassSet) -> torch.Tensor:
        """feats [B, D], labels [B] -> s(x) [B, D]: attention over the sentences of each image's own class."""
        attn = self.attention(feats, labels, classes)  # [B, H, S]
        t = classes.sentences.to(feats)
        h, (b, d) = self.cfg.heads, feats.shape
        v = (t @ self.w_v.t() if self.w_v is not None else t).view(-1, h, d // h)  # [S, H, D/H]
        return torch.einsum("bhs,she->bhe", attn, v).reshape(b, d)  # heads concatenated

    def check_sentences(self, classes: ClassSet) -> None:
        if classes.sentences is None:
            raise UserError(f"{self.name} needs LLM description sentences in the training prompt bank "
                            "(prompts.descriptions.backend is none, or the file was missing)")

    def reward_loss(self, feats: torch.Tensor, summary: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Image-summary alignment (gradient into the aggregator only: feats are cached and frozen)."""
        f, s = F.normalize(feats, dim=-1), F.normalize(summary, dim=-1)
        if self.cfg.reward == "score":
            return 1.0 - (f * s).sum(dim=-1).mean()
        same = labels[:, None] == labels[None, :] if self.cfg.reward_negatives == "other_classes" else None
        return symmetric_info_nce(s, f, self.cfg.reward_scale or self.clip.logit_scale, same)

    def distill_loss(self, aape: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        s = summary.detach()  # sg: distillation must not move the aggregator
        if self.cfg.distill == "cos":
            return 1.0 - F.cosine_similarity(aape, s, dim=-1).mean()
        return (aape - s).pow(2).sum(dim=-1).mean()

    # -- classification --------------------------------------------------------------------------------------
    def text_features(self, classes: ClassSet) -> torch.Tensor:
        raise NotImplementedError("aape's class weights depend on the image: call logits(batch, classes)")

    def precompute(self, classes: ClassSet) -> torch.Tensor:
        """[C, D] frozen template features t_c (read from the bank: nothing is encoded)."""
        return classes.template_features(self.cfg.template, option=f"{self.name}.template")

    def logits_from(self, feats: torch.Tensor, aape: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        """feats [B, D], aape [B, D], template [C, D] -> τ·f_b·w_{b,c} [B, C] (see the docstring's forms)."""
        template = template.to(feats)
        if self.cfg.combine == "gate":
            g = 1.0 + aape @ self.proj.t()  # [B, D] per-image, per-dimension gain
            dots = (feats * g) @ template.t()  # [B, C]: f·(t_c ⊙ g_b)
            sq = g.pow(2) @ template.pow(2).t()  # [B, C]: ‖t_c ⊙ g_b‖²
        else:
            if self.cfg.combine == "add":
                base, u = template, aape @ self.proj.t()  # [C, D], [B, D]
            else:
                d = template.shape[1]
                base, u = template @ self.proj[:, :d].t(), aape @ self.proj[:, d:].t()
            dots = feats @ base.t() + (feats * u).sum(dim=-1, keepdim=True)  # [B, C]: f·(t'_c + u_b)
            sq = base.pow(2).sum(-1)[None] + 2 * u @ base.t() + u.pow(2).sum(-1, keepdim=True)  # ‖t'_c + u_b‖²
        return self.clip.logit_scale * dots / sq.clamp_min(1e-24).sqrt()  # F.normalize's eps, squared

    def logits(self, batch: Batch, classes: ClassSet, cached: torch.Tensor | None = None) -> torch.Tensor:
        template = cached if cached is not None else self.precompute(classes)
        feats = batch.features.float()
        return self.logits_from(feats, self.generator(feats), template)

    # -- training --------------------------------------------------------------------------------------------
    def prepare(self, data: TrainData, classes: ClassSet) -> None:
        self.check_sentences(classes)  # fail before the first epoch (inference never needs sentences)

    def loss(self, batch: Batch, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor]:
        feats = batch.features.float()
        summary = self.summary(feats, batch.labels, classes)  # [B, D]
        aape = self.generator(feats)  # [B, D]
        logits = self.logits_from(feats, aape, self.precompute(classes))  # [B, C]
        loss = F.cross_entropy(logits, batch.labels) + self.cfg.lam * self.distill_loss(aape, summary)
        if self.cfg.mu > 0:
            loss = loss + self.cfg.mu * self.reward_loss(feats, summary, batch.labels)
        return loss, logits
