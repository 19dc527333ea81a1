"""DualView: "Generalizable Prompt Tuning for Vision-Language Models" (Q. Zhang, 2024, arXiv 2410.03189).

Soft and hand-crafted prompts are two views of the text modality; training maximises their mutual
information and adds a class-wise augmentation from the visual modality. The full text was not available to
us; everything below beyond the abstract is our reading of the paper (docs/methods/dualview.md).

    T^s [C, D]  soft view: the CoOp prompt (4 tokens from "a photo of a", coop.py), L2-normalised; only ctx trains
    T^h [C, D]  hand view: frozen features of the dataset template or of a template ensemble of the prompt
                bank (ClassSet.template_features), switch `hand_view`: dataset | clip80 | clip7 | a user list
    f(x) [B, D] cached L2-normalised image features; τ = CLIP's logit scale

    L     = CE(τ·f·T^sᵀ, y) + lam_mi·L_nce + visual term
    L_nce = ½[CE(S/τ_mi, I) + CE(Sᵀ/τ_mi, I)],  S = T^s·T^hᵀ [C, C]
            symmetric InfoNCE across classes: positives (t^s_c, t^h_c), negatives the other classes' rows;
            a lower bound on I(t^s; t^h) (up to log C).

Class-wise visual augmentation, one switch `visual_aug`:
- "prototype": p_c = normalise(mean over the training shots of class c, all views, of the normalised image
  features) [C, D], computed once in `prepare` (never saved); extra term
  lam_proto·CE(τ·f·T̃ᵀ, y) with t̃_c = normalise(t^s_c + β·p_c).
- "mixup": for every batch row i whose class has another row j in the batch (j drawn uniformly among them),
  a synthetic feature normalise(λ·f_i + (1−λ)·f_j), λ ~ Beta(α, α) per pair (global torch RNG, which the
  trainer seeds and checkpoints), trained with label y_i: extra term lam_mix·CE(τ·f_mix·T^sᵀ, y_mix).
- "none": CE + lam_mi·L_nce only.

Inference uses the soft view only (text_features = CoOp's; new classes have no visual prototypes), so an
untrained DualView scores exactly like CoOp, i.e. zero-shot "a photo of a {}.". T^s is encoded once per
step and reused by every term.

Settings (our reading: CoOp's base-to-new protocol, which the paper builds on): 4 context tokens from
"a photo of a", batch 32, lr 0.002, SGD, 200 epochs from CoOp.Config. Not known from the paper, exposed:
hand_view (default the dataset template, as KgCoOp's hand prompt), lam_mi = 1, tau_mi = 0.07 (the usual
InfoNCE temperature), visual_aug = "mixup" (the abstract's "augmentation"; better than "prototype" on the
synthetic world), β = 1, α = 1 (λ uniform on [0, 1]) and the visual terms' weights = 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from promptlab.errors import UserError
from promptlab.methods.dualview.config import DualViewConfig
from promptlab.methods.base import Batch, FrozenCLIP, TrainData
from promptlab.methods.coop.method import CoOp
from promptlab.methods.losses import symmetric_info_nce
from promptlab.prompts.bank import ClassSet


class Prototypes:
    """Class prototypes of the training shots, and each shot's own share, so that an image's own class
    prototype can leave that image out.

    sums [C, D]: per class the sum of the normalised features of all its shots and views; counts [C];
    image_sums [N, D]: per image the sum over its V views; views [N·V, D] every normalised view, view_image
    [N·V] its image (to recognise a batch row as a training view)."""

    def __init__(self, data: TrainData, n_classes: int):
        feats = F.normalize(data.features.float(), dim=-1)  # [N, V, D]
        n, v, _ = feats.shape
        self.image_sums = feats.sum(dim=1)  # [N, D]
        self.sums = torch.zeros(n_classes, feats.shape[-1]).index_add_(0, data.labels, self.image_sums)
        counts = torch.bincount(data.labels, minlength=n_classes)
        if (counts == 0).any():
            raise UserError(f"dualview: no training shots for classes {torch.nonzero(counts == 0).flatten().tolist()}")
        self.counts, self.n_views = counts * v, v
        self.views, self.view_image = feats.reshape(n * v, -1), torch.arange(n).repeat_interleave(v)

    def to(self, device: torch.device) -> "Prototypes":
        for name in ("image_sums", "sums", "counts", "views", "view_image"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def all(self) -> torch.Tensor:
        """[C, D] p_c = normalise(mean over every shot and view of class c)."""
        return F.normalize(self.sums, dim=-1)  # the mean's direction: dividing by the count first changes nothing

    def leave_one_out(self, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[B, D] the prototype of each row's own class without that row's image (all its views): a row equal
        to a training view (cos > 1 − 1e-5; batches are those exact normalised views) is left out; a row that
        is no training view is in no prototype. A class whose only shot is the row gets p = 0."""
        best, at = (feats @ self.views.t()).max(dim=1)  # [B]: the nearest training view
        found = (best > 1 - 1e-5).to(feats.dtype)[:, None]  # [B, 1]
        sums = self.sums[labels] - found * self.image_sums[self.view_image[at]]  # [B, D]
        left = self.counts[labels] - found[:, 0].long() * self.n_views  # [B] views left in the prototype
        return F.normalize(sums, dim=-1) * (left > 0).to(feats.dtype)[:, None]


def intra_class_mixup(features: torch.Tensor, labels: torch.Tensor, alpha: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Synthetic same-class samples from a batch: (mixed [n, D] renormalised, labels [n], i [n], j [n], λ [n]).

    Every row i with at least one other row of its class gets a partner j ≠ i of the same class, drawn
    uniformly (torch.multinomial, global RNG); rows alone in their class are skipped (n may be 0)."""
    same = labels[:, None] == labels[None, :]  # [B, B]
    same.fill_diagonal_(False)
    i = torch.nonzero(same.any(dim=1)).flatten()  # anchors that have a partner
    if len(i) == 0:
        empty = labels[:0]
        return features[:0], empty, empty, empty, features.new_zeros(0)
    j = torch.multinomial(same[i].float(), 1).flatten()  # [n] a same-class partner per anchor
    lam = torch.distributions.Beta(alpha, alpha).sample((len(i),)).to(features)  # [n]
    mixed = lam[:, None] * features[i] + (1 - lam[:, None]) * features[j]
    return F.normalize(mixed, dim=-1), labels[i], i, j, lam


class DualView(CoOp):

    def __init__(self, cfg: DualViewConfig, clip: FrozenCLIP, train_classes: ClassSet):
        super().__init__(cfg, clip, train_classes)
        self.prototypes: Prototypes | None = None  # plain attribute: never in the saved state
        self._prototype_names: list[str] | None = None

    def prepare(self, data: TrainData, classes: ClassSet) -> None:
        if self.cfg.visual_aug == "prototype":
            self.prototypes = Prototypes(data, len(classes)).to(self.device)
            self._prototype_names = list(classes.names)

    def hand_view_features(self, classes: ClassSet) -> torch.Tensor:
        """[C, D] frozen hand-crafted view T^h."""
        return classes.template_features(self.cfg.hand_view, option=f"{self.name}.hand_view")

    def prototype_term(self, batch: Batch, classes: ClassSet, soft: torch.Tensor) -> torch.Tensor:
        """CE(τ·f·T̃ᵀ, y), t̃_c = normalise(t^s_c + β·p_c); with leave_one_out, column y_b of row b uses the
        prototype of its class without image b (the other classes' prototypes never contain it)."""
        if self.prototypes is None or self._prototype_names != list(classes.names):
            raise UserError("dualview with visual_aug=prototype needs prepare(data, classes) on the training "
                            "classes")
        tau, beta, feats = self.clip.logit_scale, self.cfg.beta, batch.features.to(soft)
        injected = F.normalize(soft + beta * self.prototypes.all().to(soft), dim=-1)  # [C, D] t̃_c
        logits = tau * feats @ injected.t()  # [B, C]
        if self.cfg.prototype_source == "leave_one_out":
            own = F.normalize(soft[batch.labels] + beta * self.prototypes.leave_one_out(feats, batch.labels),
                              dim=-1)  # [B, D]
            rows = torch.arange(len(batch.labels), device=feats.device)
            logits = logits.index_put((rows, batch.labels), tau * (feats * own).sum(dim=-1))
        return F.cross_entropy(logits, batch.labels)

    def mixup_term(self, batch: Batch, soft: torch.Tensor) -> torch.Tensor:
        mixed, labels, *_ = intra_class_mixup(batch.features, batch.labels, self.cfg.mixup_alpha)
        if len(labels) == 0:  # no class has two rows in this batch
            return soft.sum() * 0.0
        return F.cross_entropy(self.clip.logit_scale * mixed @ soft.t(), labels)

    def loss(self, batch: Batch, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE + lam_mi·L_nce + visual term, logits [B, C]); T^s is encoded once for every term."""
        soft = self.text_features(classes)  # [C, D], grad flows to ctx only
        logits = self.logits(batch, classes, cached=soft)  # [B, C] = τ·f·T^sᵀ
        hand = self.hand_view_features(classes).to(soft).detach()
        loss = F.cross_entropy(logits, batch.labels)
        loss = loss + self.cfg.lam_mi * symmetric_info_nce(soft, hand, 1.0 / self.cfg.tau_mi)
        if self.cfg.visual_aug == "prototype":
            loss = loss + self.cfg.lam_proto * self.prototype_term(batch, classes, soft)
        elif self.cfg.visual_aug == "mixup":
            loss = loss + self.cfg.lam_mix * self.mixup_term(batch, soft)
        return loss, logits
