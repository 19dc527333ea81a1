"""What a dataset's folder under data.root holds, as one small JSON per dataset: the shard and description
stages depend on that file instead of on data.root itself.

Why: DVC hashes a directory dependency file by file for every stage that lists it, on every `dvc status`.
Measured here: 100,000 files (200 MB) listed by 8 stages cost 31 s per no-op `dvc status` and 312 s for the
first run; CoOp's $DATA holds ~1.6 million files, and 30 stages (shard + descriptions per dataset) read it,
i.e. hours. The listing stage instead walks each dataset's own folder once per `dvc repro` (1 s per 100,000
files here, so ~15 s for ImageNet) and writes a digest that changes exactly when the dataset does:

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


def _walk(folder: str, prefix: str = ""):
    """(relative POSIX path, os.DirEntry) of every file under folder, in sorted order (never in directory-listing
    order: each folder's entries sorted by name). os.scandir and plain strings: a Path per file cost 4x more."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = prefix + entry.name
        if entry.is_dir():
            yield from _walk(entry.path, rel + "/")
        else:
            yield rel, entry


def folder_listing(folder: str | Path) -> dict:
    """{"folder", "exists", "files", "bytes", "sha256"} of everything under folder (see the module doc)."""
    if not Path(folder).is_dir():  # the shard stage reports what is missing; the listing only records it
        return {"folder": str(folder), "exists": False}
    digest, n_files, n_bytes = hashlib.sha256(), 0, 0
    for rel, entry in _walk(str(folder)):
        size = entry.stat().st_size
        line = f"{rel}\t{size}"
        if os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES and size <= HASH_LIMIT:
            with open(entry.path, "rb") as f:
                line += "\t" + hashlib.sha256(f.read()).hexdigest()
        digest.update((line + "\n").encode())
        n_files, n_bytes = n_files + 1, n_bytes + size
    return {"folder": str(folder), "exists": True, "files": n_files, "bytes": n_bytes, "sha256": digest.hexdigest()}


def file_listing(path: str | Path) -> dict:
    """{"path", "exists", "sha256"} of one file (a description file outside the dataset's folder)."""
    path = Path(path)
    if not path.is_file():
        return {"path": str(path), "exists": False}
    return {"path": str(path), "exists": True, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
