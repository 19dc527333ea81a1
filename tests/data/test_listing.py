"""The per-dataset listing the shard and description stages depend on instead of data.root: it must change
exactly when the dataset's files do, and never with modification times or the root's location."""

from __future__ import annotations

import os
import shutil

from promptlab.data.listing import file_listing, folder_listing


def _dataset(root):
    (root / "images/cat").mkdir(parents=True)
    (root / "images/cat/1.jpg").write_bytes(b"\xff\xd8" + b"a" * 100)
    (root / "images/cat/2.jpg").write_bytes(b"\xff\xd8" + b"b" * 50)
    (root / "split.json").write_text('{"train": [["cat/1.jpg", 0, "cat"]]}')
    return root


def test_listing_counts_files_and_bytes(tmp_path):
    listing = folder_listing(_dataset(tmp_path / "d"))
    assert listing["exists"] and listing["files"] == 3
    assert listing["bytes"] == 102 + 52 + len('{"train": [["cat/1.jpg", 0, "cat"]]}')


def test_listing_ignores_modification_times_and_the_roots_location(tmp_path):
    before = folder_listing(_dataset(tmp_path / "d"))
    os.utime(tmp_path / "d/images/cat/1.jpg", (1, 1))
    os.utime(tmp_path / "d/split.json", (2, 2))
    assert folder_listing(tmp_path / "d")["sha256"] == before["sha256"]
    shutil.copytree(tmp_path / "d", tmp_path / "elsewhere/d")
    assert folder_listing(tmp_path / "elsewhere/d")["sha256"] == before["sha256"]


def test_listing_changes_with_added_removed_resized_or_renamed_images(tmp_path):
    d = _dataset(tmp_path / "d")
    seen = {folder_listing(d)["sha256"]}
    (d / "images/cat/3.jpg").write_bytes(b"new")
    seen.add(folder_listing(d)["sha256"])
    (d / "images/cat/3.jpg").unlink()
    assert folder_listing(d)["sha256"] in seen  # back to the original files: back to the original listing
    (d / "images/cat/2.jpg").write_bytes(b"\xff\xd8" + b"b" * 51)  # re-encoded: another size
    seen.add(folder_listing(d)["sha256"])
    (d / "images/cat/2.jpg").rename(d / "images/cat/9.jpg")
    seen.add(folder_listing(d)["sha256"])
    assert len(seen) == 4


def test_metadata_files_are_listed_by_content_images_by_size(tmp_path):
    d = _dataset(tmp_path / "d")
    before = folder_listing(d)["sha256"]
    (d / "split.json").write_text('{"train": [["cat/1.jpg", 1, "cat"]]}')  # one label changed, same size
    edited = folder_listing(d)["sha256"]
    assert edited != before
    (d / "images/cat/1.jpg").write_bytes(b"\xff\xd8" + b"z" * 100)  # same-size image edit: by design unseen
    assert folder_listing(d)["sha256"] == edited


def test_large_non_image_files_are_listed_by_size(tmp_path, monkeypatch):
    import promptlab.data.listing as listing

    d = _dataset(tmp_path / "d")
    monkeypatch.setattr(listing, "HASH_LIMIT", 10)  # split.json is now "large": never read
    before = folder_listing(d)["sha256"]
    (d / "split.json").write_text('{"train": [["cat/1.jpg", 1, "cat"]]}')
    assert folder_listing(d)["sha256"] == before


def test_a_missing_folder_or_file_is_recorded_not_raised(tmp_path):
    assert folder_listing(tmp_path / "absent") == {"folder": str(tmp_path / "absent"), "exists": False}
    assert file_listing(tmp_path / "absent.json")["exists"] is False
    (tmp_path / "f.json").write_text("{}")
    assert file_listing(tmp_path / "f.json")["sha256"] == (
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
