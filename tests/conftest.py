"""Shared fixtures: a tiny open_clip model built on the fly (random weights, the project's own config) and
class sets encoded with it. Nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

from promptlab.clip.model import LoadedCLIP, build_untrained
from promptlab.methods.base import FrozenCLIP
from promptlab.prompts.bank import build_class_set

TINY = "promptlab-tiny"
DESCRIPTIONS = [[f"A {n} is a colourful shape.", f"The {n} has clear edges."] for n in (
    "red circle", "blue square", "green triangle", "yellow star", "purple cross", "cyan hexagon")]
NAMES = ["red circle", "blue square", "green triangle", "yellow star", "purple cross", "cyan hexagon"]


@pytest.fixture(scope="session")
def loaded_clip() -> LoadedCLIP:
    import open_clip

    model = build_untrained(TINY, seed=0).eval().requires_grad_(False)
    _, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=None)
    return LoadedCLIP(model, preprocess, open_clip.get_tokenizer(TINY), TINY)


@pytest.fixture(scope="session")
def frozen_clip(loaded_clip) -> FrozenCLIP:
    return FrozenCLIP(loaded_clip)


@pytest.fixture(scope="session")
def class_set(frozen_clip):
    with torch.no_grad():
        return build_class_set(frozen_clip.text, NAMES, "a photo of a {}.", descriptions=DESCRIPTIONS)


@pytest.fixture(scope="session")
def descriptions() -> list[list[str]]:
    """The class_set fixture's LLM-style description sentences, per class."""
    return DESCRIPTIONS
