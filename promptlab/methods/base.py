"""The method interface, shared by every prompt method, and the frozen CLIP they all sit on.

A method is an nn.Module whose parameters are only its own learned tensors (CLIP is held outside the module
tree, so it can never leak into a state dict or an optimiser). It maps cached, L2-normalised image features to
logits over a ClassSet; trainable methods also define `loss`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from promptlab.clip.model import LoadedCLIP
from promptlab.clip.text import TextEncoder
from promptlab.method_configs import MethodConfig
from promptlab.prompts.bank import ClassSet


class FrozenCLIP:
    """What methods may use of CLIP: the text encoder path and the logit scale. Never trained."""

    def __init__(self, loaded: LoadedCLIP):
        self.loaded = loaded
        self.text = TextEncoder(loaded.model, loaded.tokenizer)
        self.logit_scale = float(loaded.model.logit_scale.exp().clamp(max=100))  # τ

    @property
    def embed_dim(self) -> int:
        return int(self.loaded.model.text_projection.shape[-1])


@dataclass
class TrainData:
    """A run's training shots: V pre-encoded augmented views per image."""

    features: torch.Tensor  # [N, V, D] (any float dtype; normalised per batch)
    labels: torch.Tensor  # [N] int64, indices into the training ClassSet
    patches: torch.Tensor | None = None  # [N, V, P, D] projected patch tokens, when the method needs them


@dataclass
class Batch:
    features: torch.Tensor  # [B, D] L2-normalised global image features
    labels: torch.Tensor  # [B] int64, indices into the ClassSet
    patches: torch.Tensor | None = None  # [B, P, D] projected patch tokens, when a method needs them


class PromptMethod(torch.nn.Module):
    """Subclasses set `name`, their params block `Config`, and override what differs.

    `__init__` may use `train_classes.names` and `len(train_classes)` only: a trained prompt is rebuilt from
    its prompt.json (class names, no text features) before its learned tensors are loaded."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    trainable: ClassVar[bool] = True  # False: nothing to learn (zero-shot classifiers)
    own_solver: ClassVar[bool] = False  # True: `fit` trains (e.g. full-batch L-BFGS) instead of the SGD loop
    needs_patches: ClassVar[bool] = False  # training batches carry patch tokens (evaluation never does)
    open_vocabulary: ClassVar[bool] = True  # False: can score only the classes it was trained on

    def __init__(self, cfg: MethodConfig, clip: FrozenCLIP, train_classes: ClassSet):
        super().__init__()
        self.cfg = cfg
        self.__dict__["clip"] = clip  # plain attribute: CLIP is not part of the module tree

    # -- set-up --------------------------------------------------------------------------------------------
    def prepare(self, data: TrainData, classes: ClassSet) -> None:
        """Called by the training loop before the first epoch (and again on resume) with all training shots,
        e.g. to compute class prototypes. Whatever it stores must not be needed at inference."""

    def fit(self, data: TrainData, classes: ClassSet, val: TrainData | None) -> list[dict]:
        """Own-solver methods train here and return per-iteration records {epoch, lr, loss, acc}."""
        raise NotImplementedError(f"{self.name} trains with the shared SGD loop")

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
