"""The method interface, shared by every prompt method, and the frozen CLIP they all sit on.

A method is an nn.Module whose parameters are only its own learned tensors (CLIP is held outside the module
tree, so it can never leak into a state dict or an optimiser). It maps L2-normalised image features (or, for
`inputs = "pixels"` methods, the images themselves) to logits over a ClassSet; trainable methods also define
`loss`. Its name and params block come from its registration (promptlab/methods/base_config.py).

Devices: a method lives on its CLIP's device (`method.device`); the training loop and the scorer move every
batch there before the method sees it (`Batch.to`), and `check_device` guards the method boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from promptlab.clip.model import LoadedCLIP
from promptlab.clip.text import TextEncoder
from promptlab.methods.base_config import MethodConfig, spec_for_class
from promptlab.prompts.bank import ClassSet


class FrozenCLIP:
    """What methods may use of CLIP: the text encoder path, the logit scale, and (pixel methods) the model."""

    def __init__(self, loaded: LoadedCLIP):
        self.loaded = loaded
        self.text = TextEncoder(loaded.model, loaded.tokenizer)
        # τ = exp(logit_scale), unclamped like the official CoOp/KgCoOp code (`logit_scale.exp()`): CLIP clamps
        # ln τ at ln 100 while training, so a trained model's τ is at most 100 up to rounding (OpenAI's
        # 4.6052 gives 100.003, a clamp would give 100); the tiny CLIP's pretraining keeps τ near 14.3.
        self.logit_scale = float(loaded.model.logit_scale.exp())

    @property
    def embed_dim(self) -> int:
        return int(self.loaded.model.text_projection.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.loaded.model.text_projection.device


@dataclass
class TrainData:
    """A run's training shots: V pre-encoded augmented views per image."""

    features: torch.Tensor  # [N, V, D] (any float dtype; normalised per batch)
    labels: torch.Tensor  # [N] int64, indices into the training ClassSet
    patches: torch.Tensor | None = None  # [N, V, P, D] projected patch tokens, when the method needs them


@dataclass
class Batch:
    features: torch.Tensor | None  # [B, D] L2-normalised global image features (None for pixel batches)
    labels: torch.Tensor  # [B] int64, indices into the ClassSet
    patches: torch.Tensor | None = None  # [B, P, D] projected patch tokens, when a method needs them
    images: torch.Tensor | None = None  # [B, 3, H, W] normalised pixels (methods with inputs = "pixels")

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{f.name: None if (t := getattr(self, f.name)) is None else t.to(device, non_blocking=True)
                        for f in fields(self)})

    def __len__(self) -> int:
        return len(self.labels)


class PromptTokens:
    """Tokenised prompts "<prefix> <name>." for a class list: ids [C, L], embeddings [C, L, w], EOT [C] and
    the class-name token counts (needed to move the class tokens for middle/front positions)."""

    def __init__(self, clip: FrozenCLIP, names: list[str], prefix: str):
        text = clip.text
        self.ids = text.tokenize([f"{prefix} {n}." for n in names])
        self.embeddings = text.embed(self.ids)  # frozen table lookup, no grad
        self.eot = self.ids.argmax(dim=-1)
        self.name_lens = (text.tokenize(names).argmax(dim=-1) - 1).tolist()  # tokens between SOS and EOT


class PromptMethod(torch.nn.Module):
    """Subclasses override what differs; `name` and `Config` are set from the method's registration.

    `__init__` may use `train_classes.names` and `len(train_classes)` only: a trained prompt is rebuilt from
    its prompt.json (class names, no text features) before its learned tensors are loaded."""

    name: ClassVar[str | None] = None
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    inputs: ClassVar[Literal["features", "pixels"]] = "features"  # what it trains and scores on
    trainable: ClassVar[bool] = True  # False: nothing to learn (zero-shot classifiers)
    own_solver: ClassVar[bool] = False  # True: `fit` trains (e.g. full-batch L-BFGS) instead of the SGD loop
    needs_patches: ClassVar[bool] = False  # training batches carry patch tokens (evaluation never does)
    open_vocabulary: bool = True  # False: can score only the classes it was trained on (may depend on cfg)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        spec = spec_for_class(cls)
        if spec is not None:  # the one registration names the class and binds its params block
            cls.name, cls.Config = spec.name, spec.config

    def __init__(self, cfg: MethodConfig, clip: FrozenCLIP, train_classes: ClassSet):
        super().__init__()
        self.cfg = cfg
        self.__dict__["clip"] = clip  # plain attribute: CLIP is not part of the module tree

    @property
    def device(self) -> torch.device:
        return self.clip.device

    def check_device(self, batch: Batch) -> None:
        """Every tensor a method sees lives on its device (a mismatch fails here, naming both)."""
        for f in fields(batch):
            t = getattr(batch, f.name)
            if t is not None and t.device != self.device:
                raise RuntimeError(f"{self.name}: batch.{f.name} is on {t.device}, the method on {self.device}")

    # -- set-up --------------------------------------------------------------------------------------------
    def prepare(self, data: TrainData, classes: ClassSet) -> None:
        """Called by the training loop before the first epoch (and again on resume) with all training shots,
        e.g. to compute class prototypes. Whatever it stores must not be needed at inference."""

    def fit(self, data: TrainData, classes: ClassSet, val: TrainData | None) -> list[dict]:
        """Own-solver methods train here and return per-iteration records {epoch, lr, loss, acc}."""
        raise NotImplementedError(f"{self.name} trains with the shared SGD loop")

    def on_epoch_end(self, epoch: int) -> None:
        """Called after each epoch's optimiser steps, before its checkpoint (e.g. to accumulate an average of
        the epoch's weights in a registered buffer, which the checkpoint then carries)."""

    def finish_training(self) -> None:
        """Called once after the last epoch (e.g. to load aggregated weights)."""

    # -- classification ------------------------------------------------------------------------------------
    def text_features(self, classes: ClassSet) -> torch.Tensor:
        """[C, D] L2-normalised class weights (instance-agnostic methods)."""
        raise NotImplementedError

    def precompute(self, classes: ClassSet) -> torch.Tensor | None:
        """Whatever evaluation can reuse across batches (by default the class weights)."""
        return self.text_features(classes)

    def logits(self, batch: Batch, classes: ClassSet, cached: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C] = τ · cos(f(x), w_c)."""
        weights = cached if cached is not None else self.text_features(classes)
        return self.clip.logit_scale * batch.features @ weights.t()

    # -- training ------------------------------------------------------------------------------------------
    def loss(self, batch: Batch, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar loss, logits [B, C]); cross-entropy unless a method adds terms."""
        logits = self.logits(batch, classes)
        return F.cross_entropy(logits, batch.labels), logits

    def backward(self, batch: Batch, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the loss and fill .grad of the method's parameters; returns (loss, logits).
        Methods that shape their update (ProGrad's gradient projection) override this, not the loop."""
        loss, logits = self.loss(batch, classes)
        loss.backward()
        return loss, logits

    def learned_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
