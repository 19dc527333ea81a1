"""PromptSRC: Self-regulating Prompts (Khattak et al., ICCV 2023).

IVLP's prompts (promptlab/methods/ivlp/method.py; 4 + 4 tokens, depth 9) trained with three
self-regularising terms towards the frozen CLIP, and Gaussian prompt aggregation (GPA):

    L = CE(z, y) + λ1·L1(t, t̄) + λ2·L1(v, v̄) + λ3·T²·Σ KL(softmax(z̄/T) ‖ softmax(z/T)) / (B·C)

    t  [C, D]  prompted class text features (normalised)
    t̄  [C, D]  teacher: per class the mean of the UNNORMALISED frozen features of the 60 ImageNet templates
               of CoOp's list (OpenAI's first 60), then normalised (textual diversity)
    v  [B, D]  prompted image features; v̄ the frozen, prompt-free image features of the same augmented
               pixels (normalised, no gradient)
    z  [B, C]  = τ·v·tᵀ;  z̄ = τ·v̄·t̄ᵀ (zero-shot logits)
    L1         mean absolute difference over all elements (torch's l1_loss, reduction "mean")
    KL         summed over batch and classes and divided by B·C (the official reduction), λ3 = 1, T = 1

GPA: with w_e = N(e; μ, σ) for epochs e = 1..E, normalised to sum 1, the final prompts are Σ_e w_e·θ_e, θ_e
the prompts at the end of epoch e. The running sum lives in buffers `gpa_sum.*` (saved with every checkpoint,
so a resumed run aggregates exactly what an uninterrupted one does); `finish_training` loads it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip import zero_shot_metadata

from promptlab.methods.ivlp.method import IVLP
from promptlab.prompts.bank import ClassSet

TEACHER_TEMPLATES = zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES[:60]  # CoOp's IMAGENET_TEMPLATES (reordered)


def gpa_weights(epochs: int, mean: float, std: float) -> list[float]:
    """w_e ∝ N(e; μ, σ) for e = 1..E, summing to 1."""
    pdf = [math.exp(-0.5 * ((e - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)) for e in range(1, epochs + 1)]
    total = sum(pdf)
    if total == 0:
        raise ValueError(f"GPA weights underflow: μ={mean}, σ={std} put no mass on epochs 1..{epochs}")
    return [w / total for w in pdf]


class PromptSRC(IVLP):
    def __init__(self, cfg, clip, train_classes):
        super().__init__(cfg, clip, train_classes)
        self._teachers: dict[tuple[str, ...], torch.Tensor] = {}
        self.gpa_sum = torch.nn.Module()  # running Σ_e w_e·θ_e, one buffer per learned tensor
        if cfg.gpa:
            for name, p in self.named_parameters():
                self.gpa_sum.register_buffer(self._gpa_key(name), torch.zeros_like(p))

    @staticmethod
    def _gpa_key(name: str) -> str:
        return name.replace(".", "__")

    # -- frozen teachers -----------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_text(self, classes: ClassSet) -> torch.Tensor:
        """t̄ [C, D]: normalise(mean over the 60 templates of the unnormalised frozen features)."""
        key = tuple(classes.names)
        if key not in self._teachers:
            text = self.clip.text
            names = [n.replace("_", " ") for n in classes.names]
            per_template = [text.encode_ids(text.tokenize([t(n) for n in names])).float()
                            for t in TEACHER_TEMPLATES]  # 60 x [C, D], unnormalised
            self._teachers[key] = F.normalize(torch.stack(per_template).mean(dim=0), dim=-1)
        return self._teachers[key]

    @torch.no_grad()
    def teacher_image(self, images: torch.Tensor) -> torch.Tensor:
        """v̄ [B, D]: the prompt-free frozen image tower on the same pixels, normalised."""
        with self.autocast():
            feats = self.towers.encode_image(images.to(self.device))
        return F.normalize(feats.float(), dim=-1)

    # -- loss ----------------------------------------------------------------------------------------------
    def loss_terms(self, batch, classes: ClassSet) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({ce, text_l1, image_l1, kl}, each already weighted; logits [B, C])."""
        cfg, tau, p = self.cfg, self.clip.logit_scale, self.prompts()
        text = self.text_features(classes, p)  # [C, D]
        image = self.image_features(batch.images, p)  # [B, D]
        logits = tau * image @ text.t()  # [B, C]
        t_bar, v_bar = self.teacher_text(classes), self.teacher_image(batch.images)
        zs_logits = tau * v_bar @ t_bar.t()  # [B, C]
        temp = cfg.kl_temperature
        kl = F.kl_div(F.log_softmax(logits / temp, dim=1), F.log_softmax(zs_logits / temp, dim=1),
                      reduction="sum", log_target=True) * temp ** 2 / logits.numel()
        terms = {"ce": F.cross_entropy(logits, batch.labels.to(logits.device)),
                 "text_l1": cfg.text_loss_weight * F.l1_loss(text, t_bar),
                 "image_l1": cfg.image_loss_weight * F.l1_loss(image, v_bar),
                 "kl": cfg.kl_weight * kl}
        return terms, logits

    def loss(self, batch, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor]:
        terms, logits = self.loss_terms(batch, classes)
        return sum(terms.values()), logits

    # -- Gaussian prompt aggregation -----------------------------------------------------------------------
    @torch.no_grad()
    def on_epoch_end(self, epoch: int) -> None:
        """Add w_{epoch+1}·θ to the running sum (epoch counts from 0, the weights from 1)."""
        if not self.cfg.gpa:
            return
        w = gpa_weights(self.cfg.epochs, self.cfg.gpa_mean, self.cfg.gpa_std)[epoch]
        for name, p in self.named_parameters():
            getattr(self.gpa_sum, self._gpa_key(name)).add_(p.detach() * w)

    @torch.no_grad()
    def finish_training(self) -> None:
        """The aggregated prompts become the model's (idempotent: a resumed, finished run loads them again)."""
        if not self.cfg.gpa:
            return
        for name, p in self.named_parameters():
            p.copy_(getattr(self.gpa_sum, self._gpa_key(name)))
