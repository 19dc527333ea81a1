"""The `model` stage's record: which checkpoint model.name + model.pretrained load, and its sha256."""

from __future__ import annotations

import hashlib

import pytest

from promptlab.clip.resolve import looks_like_path, resolve_checkpoint
from promptlab.errors import UserError


def test_a_local_checkpoint_is_named_and_hashed(tmp_path):
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"x" * (1 << 20) + b"tail")
    record = resolve_checkpoint("ViT-B-16", str(ckpt))
    assert record == {"name": "ViT-B-16", "pretrained": str(ckpt), "kind": "file", "file": str(ckpt),
                      "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}


def test_random_init_has_nothing_to_hash():
    assert resolve_checkpoint("ViT-B-16", None) == {"name": "ViT-B-16", "pretrained": None, "kind": "random",
                                                    "file": None, "sha256": None}


def test_a_missing_file_or_an_unknown_tag_is_one_line_naming_it(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found: .*nope.safetensors"):
        resolve_checkpoint("ViT-B-16", str(tmp_path / "nope.safetensors"))
    with pytest.raises(UserError, match="no weights 'not-a-tag' for 'ViT-B-16'.*openai"):
        resolve_checkpoint("ViT-B-16", "not-a-tag")


def test_paths_and_tags():
    assert looks_like_path("models/a.bin") and looks_like_path("w.safetensors") and looks_like_path("/abs/x")
    assert not looks_like_path("openai") and not looks_like_path("laion2b_s34b_b88k")
