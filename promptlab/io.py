"""Atomic output helpers: every stage writes to a temporary sibling and renames it into place, so an
interrupted stage never leaves an output DVC would take as valid."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # torch is imported where tensors are read or written: the JSON-only stages never load it
    import torch


def _clear_leftovers(path: Path) -> None:
    """Remove temporaries of `path` left by a process killed mid-write (SIGKILL skips `finally`). DVC runs one
    stage at a time per repo, so no live writer owns them."""
    for old in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(old) if old.is_dir() else old.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path that is renamed to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def dumps_json(obj) -> str:
    """Canonical JSON (sorted keys, fixed indent, trailing newline) so reruns give identical bytes."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_json(path: str | Path, obj) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(dumps_json(obj))


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


META_KEY = "promptlab"


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """safetensors with the metadata as one sorted JSON string under META_KEY: safetensors writes its metadata
    map in hash order, which changes from process to process, so several keys would make reruns differ."""
    from safetensors.torch import save_file

    meta = {META_KEY: json.dumps(metadata, sort_keys=True)} if metadata else None
    with atomic_file(path) as tmp:
        # metadata=None, not {}: safetensors 0.8 writes a corrupt header for {} tensors + {} metadata
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def load_tensors(path: str | Path, skip: tuple[str, ...] = ()) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors (all but those named in `skip`, which are never read from disk) and decoded metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
        if skip:
            return {k: f.get_tensor(k) for k in f.keys() if k not in skip}, meta
    return load_file(str(path)), meta
