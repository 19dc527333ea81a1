"""Which checkpoint file a (model.name, model.pretrained) pair loads, and its sha256: the record the `model`
stage writes (models/model.json) and every stage that encodes with CLIP depends on, in place of the weights'
folder. Torch-free for local files; an open_clip tag ("openai") imports open_clip to find (and on first use
download) the tag's file in its cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

from promptlab.errors import UserError


def looks_like_path(pretrained: str) -> bool:
    """A local checkpoint rather than an open_clip tag: it has a folder or a checkpoint suffix."""
    return "/" in pretrained or pretrained.endswith((".safetensors", ".pt", ".pth", ".bin"))


def sha256_file(path: str | Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):  # 16 MiB reads: ViT-B/16's 600 MB in about a second
            h.update(block)
    return h.hexdigest()


def _tag_file(name: str, tag: str) -> Path:
    """The file open_clip loads for a zoo (name, tag); downloaded into its cache the first time."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = [t for n, t in open_clip.list_pretrained() if n == name]
        raise UserError(f"model.pretrained: open_clip has no weights '{tag}' for '{name}' (it has: {tags})")
    return Path(open_clip.download_pretrained(cfg))


def resolve_checkpoint(name: str, pretrained: str | None) -> dict:
    """{name, pretrained, kind, file, sha256}. `file` is the local path as given (a tag's cache path differs
    between machines and is left out, so the record is the same on every machine with the same weights)."""
    record = {"name": name, "pretrained": pretrained, "kind": "random", "file": None, "sha256": None}
    if pretrained is None:
        return record  # random init of the architecture: nothing to hash
    if looks_like_path(pretrained):
        if not Path(pretrained).is_file():
            raise UserError(f"model.pretrained: checkpoint not found: {pretrained}")
        return {**record, "kind": "file", "file": pretrained, "sha256": sha256_file(pretrained)}
    return {**record, "kind": "open_clip tag", "sha256": sha256_file(_tag_file(name, pretrained))}
