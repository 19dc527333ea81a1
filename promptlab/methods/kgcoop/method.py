"""KgCoOp: Visual-Language Prompt Tuning with Knowledge-guided Context Optimization (Yao et al., CVPR 2023).

CoOp (4 context tokens from "a photo of a", see coop.py) plus a regulariser that keeps the learned class text
features close to the frozen zero-shot features of a hand-crafted teacher prompt:

    L = CE(τ·f(x)·Wᵀ, y) + λ · (1 − mean_c cos(w_c, w_c^hand))

    W      [C, D]  learned class features (CoOp prompt -> frozen text encoder -> L2-normalised)
    W^hand [C, D]  the teacher: KgCoOp's own template for the dataset, encoded once, L2-normalised, frozen
    f(x)   [B, D]  cached L2-normalised image features; τ = CLIP's logit scale, exp(logit_scale) unclamped

The teacher template is the official code's own table (CUSTOM_TEMPLATES in trainers/kgcoop.py), kept in
templates.yaml beside this file: it is CoOp's table except DTD ("a photo of a {}, a type of texture." where
CoOp and the prompt bank's hand features use "{} texture."). Where the table's template is the dataset's own
(every other listed dataset) the bank's hand features are the teacher; a dataset it does not list (the
synthetic world, your own data) uses its own template.

The paper writes the term as the mean squared L2 distance ‖w_c − w_c^hand‖²; for unit vectors that is
2·(1 − cos), and the official code (trainers/kgcoop.py: `score = 1.0 - torch.mean(cos(text_features,
text_features_old))`, `loss = CE + W·score`, W = 8.0) uses 1 − mean cos. We implement docs/methods/baselines.md ("kgcoop"), which is the
official code's form, so λ = 8.0 means the same thing as there. The mean is over the classes of the batch's
ClassSet (all training classes: CoOp encodes every class prompt at every step), as in the official code.

Settings (official base-to-new configs, vit_b16_ep100_ctxv1 with W=8.0): n_ctx 4 from "a photo of a",
batch 128, 100 epochs, lr 0.002; the rest (SGD 0.9, wd 5e-4, 1 constant warm-up epoch at 1e-5, cosine) are
the shared protocol defaults in TrainConfig. Evaluation is plain CoOp (the regulariser only shapes training).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from promptlab.methods.kgcoop.config import KgCoOpConfig
from promptlab.methods.base import Batch
from promptlab.methods.coop.method import CoOp
from promptlab.prompts.bank import ClassSet


TEACHER_TEMPLATES: dict[str, str] = yaml.safe_load(Path(__file__).with_name("templates.yaml").read_text())


class KgCoOp(CoOp):

    def __init__(self, cfg: KgCoOpConfig, clip, train_classes: ClassSet):
        super().__init__(cfg, clip, train_classes)
        self._teachers: dict[tuple, torch.Tensor] = {}  # (dataset, names) -> [C, D], encoded once

    def teacher_features(self, classes: ClassSet) -> torch.Tensor:
        """[C, D] frozen teacher features: KgCoOp's own template for classes.dataset (templates.yaml) when it
        differs from the bank's template, else the bank's hand features."""
        template = TEACHER_TEMPLATES.get(classes.dataset or "", classes.template)
        if template == classes.template:
            return classes.hand_features
        key = (classes.dataset, tuple(classes.names))
        if key not in self._teachers:
            with torch.no_grad():
                self._teachers[key] = self.clip.text.encode_texts([template.format(n) for n in classes.names])
        return self._teachers[key]

    @staticmethod
    def knowledge_gap(weights: torch.Tensor, hand: torch.Tensor) -> torch.Tensor:
        """1 − mean_c cos(w_c, w_c^hand): weights [C, D] learned (normalised), hand [C, D] frozen -> scalar.

        Both are unit vectors already, so cos is a row-wise dot product; hand carries no gradient."""
        hand = hand.to(device=weights.device, dtype=weights.dtype).detach()
        return 1.0 - (weights * hand).sum(dim=-1).mean()

    def loss(self, batch: Batch, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE + λ·(1 − mean cos), logits [B, C]); the class features are encoded once for both terms."""
        weights = self.text_features(classes)  # [C, D], grad flows to ctx only
        logits = self.logits(batch, classes, cached=weights)  # [B, C] = τ·f·Wᵀ
        ce = F.cross_entropy(logits, batch.labels)
        return ce + self.cfg.lam * self.knowledge_gap(weights, self.teacher_features(classes)), logits
