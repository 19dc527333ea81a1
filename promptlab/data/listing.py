"""What a dataset's folder under data.root holds, as one small JSON per dataset: the shard and description
stages depend on that file instead of on data.root itself.

Why: DVC hashes a directory dependency file by file for every stage that lists it, on every `dvc status`.
Measured here: 100,000 files (200 MB) listed by 8 stages cost 31 s per no-op `dvc status` and 312 s for the
first run; CoOp's $DATA holds ~1.6 million files, and 30 stages (shard + descriptions per dataset) read it,
i.e. hours. The listing stage instead walks each dataset's own folder once per `dvc repro` (a few seconds for
ImageNet) and writes a digest that changes exactly when the dataset does:

- images (by suffix): relative path and size. Re-encoding an image changes its size; a same-size edit of an
  image is the one change this misses (`dvc repro -f shard@<id>` after such an edit);
- every other file (split JSON, classnames.txt, variant lists, .mat, description files) up to 64 MiB: relative
  path, size and sha256 of the content; larger ones (an archive left in the folder): path and size.

Modification times are left out on purpose: a rebuilt synthetic world, a copy or a fresh clone must give the
same listing, or the pipeline's outputs would stop being byte-identical across machines.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
HASH_LIMIT = 64 * 2**20  # non-image files up to this size are hashed by content


def _files(folder: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of every file under folder, sorted (never in directory-listing order)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            out.append((path.relative_to(folder).as_posix(), path))
    return sorted(out)


def _entry(rel: str, path: Path) -> tuple[str, int]:
    """One line of the digest and the file's size."""
    size = path.stat().st_size
    if path.suffix.lower() in IMAGE_SUFFIXES or size > HASH_LIMIT:
        return f"{rel}\t{size}\n", size
    return f"{rel}\t{size}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n", size


def folder_listing(folder: str | Path) -> dict:
    """{"folder", "exists", "files", "bytes", "sha256"} of everything under folder (see the module doc)."""
    folder = Path(folder)
    if not folder.is_dir():  # the shard stage reports what is missing; the listing only records it
        return {"folder": str(folder), "exists": False}
    digest, n_bytes, files = hashlib.sha256(), 0, _files(folder)
    for rel, path in files:
        line, size = _entry(rel, path)
        digest.update(line.encode())
        n_bytes += size
    return {"folder": str(folder), "exists": True, "files": len(files), "bytes": n_bytes,
            "sha256": digest.hexdigest()}


def file_listing(path: str | Path) -> dict:
    """{"path", "exists", "sha256"} of one file (a description file outside the dataset's folder)."""
    path = Path(path)
    if not path.is_file():
        return {"path": str(path), "exists": False}
    return {"path": str(path), "exists": True, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
