"""Loading open_clip models: a zoo name + tag, or the project's own config + a local checkpoint."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import open_clip
import torch

from promptlab.clip.resolve import looks_like_path
from promptlab.errors import UserError

CONFIG_DIR = Path(__file__).with_name("model_configs")
open_clip.add_model_config(CONFIG_DIR)  # registers "promptlab-tiny" and any config dropped beside it


@dataclass
class LoadedCLIP:
    model: torch.nn.Module  # open_clip CLIP, eval mode, frozen
    preprocess: Callable  # the model's own test transform (resize shorter side, center crop, its mean/std)
    tokenizer: Callable
    name: str

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)


def load_clip(name: str, pretrained: str | None, device: str = "cpu") -> LoadedCLIP:
    if name not in open_clip.list_models():
        raise UserError(f"model.name: unknown open_clip model '{name}'")
    if pretrained and looks_like_path(pretrained) and not Path(pretrained).is_file():
        raise UserError(f"model.pretrained: checkpoint not found: {pretrained}")
    if pretrained == "openai" and "quickgelu" not in name.lower():
        warnings.warn(f"OpenAI weights were trained with QuickGELU: use '{name}-quickgelu', not '{name}'")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # pretrained null: the same random init in every process (e.g. torchrun ranks)
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
    model.eval().requires_grad_(False)
    return LoadedCLIP(model, preprocess, open_clip.get_tokenizer(name), name)


def build_untrained(name: str, seed: int) -> torch.nn.Module:
    """A freshly initialised model of the given config (used by the pretrain stage)."""
    torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=None)
