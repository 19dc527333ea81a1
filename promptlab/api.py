"""Using a trained prompt outside the pipeline: load it with its open_clip model and classify new images.

    from promptlab.api import PromptClassifier
    clf = PromptClassifier.from_run("models/prompts/coop/base2new/synthetic/seed1",
                                    model="promptlab-tiny",
                                    pretrained="models/tiny_clip/open_clip_model.safetensors")
    probs = clf.predict_proba(images, ["red circle", "blue star"])   # PIL images -> [N, C]

A run directory holds only the method's config and learned tensors (prompt.json + prompt.safetensors);
CLIP comes from open_clip as usual, so the same prompt works with any copy of the model it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from promptlab.clip.features import encode_images
from promptlab.clip.model import load_clip
from promptlab.errors import UserError
from promptlab.methods.base import Batch, FrozenCLIP, PromptMethod
from promptlab.prompts.bank import build_class_set
from promptlab.saved_prompt import load_prompt


class PromptClassifier:
    def __init__(self, run_dir: str | Path, clip: FrozenCLIP):
        self.run_dir = Path(run_dir)
        self.clip = clip

    @classmethod
    def from_run(cls, run_dir: str | Path, model: str, pretrained: str | None, device: str = "cpu"):
        return cls(run_dir, FrozenCLIP(load_clip(model, pretrained, device)))

    def method_for(self, classnames: list[str], template: str = "a photo of a {}.",
                   descriptions: list[list[str]] | None = None) -> tuple[PromptMethod, object]:
        """The trained method and the ClassSet it scores (hand-crafted, ensemble and optional LLM-description
        features encoded here, as the prompts stage would)."""
        with torch.no_grad():
            classes = build_class_set(self.clip.text, classnames, template, descriptions=descriptions)
        return load_prompt(self.run_dir, self.clip), classes.to(self.clip.device)

    @torch.no_grad()
    def logits(self, images: list, classnames: list[str], template: str = "a photo of a {}.",
               descriptions: list[list[str]] | None = None) -> torch.Tensor:
        """PIL images -> logits [N, C] = τ·cos(image, class) with the model's own test preprocessing. Pixel
        methods (vpt, ivlp, maple, promptsrc) run their prompted towers on the pixels themselves."""
        if not len(images):
            raise UserError("PromptClassifier: no images given (pass a non-empty list of PIL images)")
        method, classes = self.method_for(classnames, template, descriptions)
        classes = classes.to(method.device)
        pixels = torch.stack([self.clip.loaded.preprocess(im) for im in images]).to(method.device)  # [N, 3, H, W]
        labels = torch.zeros(len(images), dtype=torch.long, device=method.device)
        if method.inputs == "pixels":
            batch = Batch(None, labels, images=pixels)
        else:
            glob, patches = encode_images(self.clip.loaded.model, pixels, patches=method.needs_patches)
            batch = Batch(F.normalize(glob, dim=-1), labels, patches)
        return method.logits(batch, classes, method.precompute(classes))

    def predict_proba(self, images: list, classnames: list[str], **kw) -> torch.Tensor:
        return self.logits(images, classnames, **kw).softmax(dim=-1)

    def predict(self, images: list, classnames: list[str], **kw) -> list[str]:
        return [classnames[i] for i in self.logits(images, classnames, **kw).argmax(dim=-1).tolist()]
