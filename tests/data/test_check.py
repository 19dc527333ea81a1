"""`python -m promptlab check-data`: complete / incomplete / absent datasets, what is missing, exit codes, the
JSON document, and that image checks cost one listing per folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptlab.__main__ import main
from promptlab.data import check
from promptlab.data.check import check_dataset, check_root, format_report, missing_images
from promptlab.data.registry import DATASETS, REAL_DATASETS
from promptlab.errors import UserError

REPO = Path(__file__).resolve().parents[2]
REPORT_KEYS = {"id", "folder", "status", "complete", "missing", "errors", "missing_images", "classes",
               "expected_classes", "items", "hint"}


@pytest.fixture
def root(tmp_path, fake) -> Path:
    """eurosat complete; fgvc_aircraft without its val list; imagenet_a with 2 of CoOp's 200 folders;
    caltech101 whose split references 3 deleted images; everything else absent."""
    fake.eurosat(tmp_path)
    (fake.fgvc(tmp_path) / "images_variant_val.txt").unlink()
    fake.imagenet_a(tmp_path)
    classes = [f"c{i:03d}" for i in range(100)]
    caltech = fake.split_json(tmp_path, "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                              classes, per_split=(1, 1, 1))
    for path in ("c000/test_0.jpg", "c007/train_0.jpg", "c042/val_0.jpg"):
        (caltech / "101_ObjectCategories" / path).unlink()
    return tmp_path


def test_complete_dataset(root):
    r = check_dataset(DATASETS["eurosat"], root)
    assert set(r) == REPORT_KEYS
    assert r["status"] == "complete" and r["complete"] and not r["missing"] and not r["errors"]
    assert r["classes"] == r["expected_classes"] == 10
    assert r["items"] == {"train": 20, "val": 10, "test": 10}
    assert r["missing_images"] == {"count": 0, "first": []}


def test_missing_split_list_is_named(root):
    r = check_dataset(DATASETS["fgvc_aircraft"], root)
    assert r["status"] == "incomplete" and not r["complete"]
    assert r["missing"] == [f"val list: {root / 'fgvc_aircraft' / 'images_variant_val.txt'}"]
    assert r["hint"].startswith("see CoOp DATASETS.md: FGVCAircraft")


def test_wrong_class_count_is_an_error(root):
    r = check_dataset(DATASETS["imagenet_a"], root)
    assert r["status"] == "incomplete" and r["classes"] == 2
    assert r["errors"] == ["2 classes, CoOp's data has 200 ('imagenet_a' means CoOp's full dataset; a class subset "
                           "or your own data: give it its own id in data.custom_datasets, README \"Your own dataset\")"]


def test_missing_images_are_counted_with_the_first_few(root):
    r = check_dataset(DATASETS["caltech101"], root)
    assert r["status"] == "incomplete" and r["classes"] == 100 and not r["errors"]
    assert r["missing_images"] == {"count": 3,
                                   "first": ["c000/test_0.jpg", "c007/train_0.jpg", "c042/val_0.jpg"]}


def test_absent_dataset(root):
    r = check_dataset(DATASETS["imagenet"], root)
    assert r["status"] == "absent" and r["missing"] == [f"dataset folder: {root / 'imagenet'}"]
    assert r["items"] == {} and r["classes"] is None


def test_reader_errors_are_reported_not_raised(root, fake):
    folder = fake.imagenet(root)
    for f in sorted((folder / "images" / "val" / "n01440764").iterdir()):
        f.unlink() if f.is_file() else f.rmdir()
    (folder / "images" / "val" / "n01440764").rmdir()
    r = check_dataset(DATASETS["imagenet"], root)
    assert r["status"] == "incomplete"
    assert len(r["errors"]) == 1 and "1 class folder of 4 missing" in r["errors"][0]


def test_default_reports_every_real_dataset_and_fails_only_on_present_incomplete_ones(root):
    result = check_root(root)
    assert list(result["datasets"]) == REAL_DATASETS  # synthetic: not there, not listed
    assert result["requested"] is None
    assert sorted(result["failing"]) == ["caltech101", "fgvc_aircraft", "imagenet_a"]  # absent ones do not fail
    statuses = {i: r["status"] for i, r in result["datasets"].items()}
    assert statuses["eurosat"] == "complete" and statuses["dtd"] == "absent"


def test_requested_datasets_fail_when_absent(root):
    assert check_root(root, ["eurosat"])["ok"]
    result = check_root(root, ["eurosat", "dtd"])
    assert not result["ok"] and result["failing"] == ["dtd"] and list(result["datasets"]) == ["eurosat", "dtd"]


def test_generated_datasets_are_listed_when_present(tmp_path):
    (tmp_path / "synthetic").mkdir()
    assert list(check_root(tmp_path)["datasets"])[:1] == ["synthetic"]


def test_missing_root_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="data root not found"):
        check_root(tmp_path / "nope")


def test_human_output_one_line_per_dataset_then_indented_details(root):
    text = format_report(check_root(root, ["eurosat", "fgvc_aircraft", "caltech101"]))
    lines = text.splitlines()
    assert lines[0] == f"data root: {root}"
    assert lines[1].split() == ["eurosat", "complete", "10", "classes", "train", "20", "val", "10", "test", "10"]
    assert lines[2].split()[:2] == ["fgvc_aircraft", "incomplete"]
    assert lines[3] == f"    missing val list: {root / 'fgvc_aircraft' / 'images_variant_val.txt'}"
    assert lines[4].startswith("    get it: see CoOp DATASETS.md: FGVCAircraft")
    assert "    3 images referenced by the split files do not exist, e.g. c000/test_0.jpg" in text
    assert lines[-1] == "1 complete, 2 incomplete, 0 absent: not ok: fgvc_aircraft, caltech101 not complete"


def test_json_output_shape(root, capsys):
    with pytest.raises(SystemExit) as info:
        main(["check-data", "--root", str(root), "--json"])
    assert info.value.code == 1
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"root", "requested", "ok", "failing", "datasets"}
    assert list(doc["datasets"]) == REAL_DATASETS
    assert all(set(r) == REPORT_KEYS for r in doc["datasets"].values())


def test_main_exits_zero_when_the_requested_datasets_are_complete(root, capsys):
    main(["check-data", "--root", str(root), "--dataset", "eurosat"])  # returns: no SystemExit
    assert capsys.readouterr().out.splitlines()[-1] == "1 complete, 0 incomplete, 0 absent: ok"


def test_cli_exit_code_and_output(root):
    """The one subprocess test: `python -m promptlab check-data` exits 1 on an incomplete requested dataset."""
    proc = subprocess.run([sys.executable, "-m", "promptlab", "check-data", "--root", str(root),
                           "--dataset", "eurosat", "--dataset", "dtd"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines()[1].startswith("eurosat ")
    assert "dtd               absent" in proc.stdout


def test_missing_images_lists_each_folder_once(tmp_path, monkeypatch):
    for name in ("a/1.jpg", "a/2.jpg", "b/1.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    calls = []
    real_listdir = os.listdir
    monkeypatch.setattr(check.os, "listdir", lambda p: calls.append(p) or real_listdir(p))
    paths = ["a/1.jpg", "a/2.jpg", "a/3.jpg", "b/1.jpg", "c/9.jpg", "top.jpg"] * 2
    assert missing_images(tmp_path, paths) == (3, ["a/3.jpg", "c/9.jpg", "top.jpg"])
    assert len(calls) == 4  # a, b, c, and the image folder itself
