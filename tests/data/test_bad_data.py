"""Bad data in a CoOp-format dataset (docs/architecture.md "data.root layout"): labels out of range, two class
names for one label, empty classes, and bad image files skipped under `data.bad_images: skip` (counted, listed,
and otherwise the same shards as a clean copy of the data). Fixtures are real split files and JPEGs written into
tmp_path."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from assertions import one_line_user_error as _error
from promptlab.data.check import check_dataset
from promptlab.data.coop_format import read_split, sample_few_shot
from promptlab.data.readers import read_dataset
from promptlab.data.registry import DatasetSpec
from promptlab.data.shards import read_manifest, read_skipped, sample_key, write_shards

REPO = Path(__file__).resolve().parents[2]
SPEC = DatasetSpec(id="toy", folder="toy", images="images", split="split_zhou_Toy.json")
SPEC_SYN = dataclasses.replace(SPEC, id="synthetic", folder="synthetic", split="split_zhou_Synthetic.json")
CLASSES = ["cat", "dog", "fox"]
SHOTS, SEEDS = 2, [1, 2]


@pytest.fixture
def toy(tmp_path, fake) -> Path:
    """A data root with `toy`: 3 classes, 4 train, 2 val and 2 test JPEGs each (`<class>/<split>_<k>.jpg`)."""
    fake.split_json(tmp_path / "raw", "toy", "images", "split_zhou_Toy.json", CLASSES, per_split=(4, 2, 2))
    return tmp_path / "raw"


def _edit_split(root: Path, edit) -> None:
    """Rewrite the split file through `edit(split_dict)`."""
    path = SPEC.split_file(root)
    split = json.loads(path.read_text())
    edit(split)
    path.write_text(json.dumps(split))


def _shard(root: Path, out: Path, spec: DatasetSpec = SPEC, bad_images: str = "error", log=None):
    out.mkdir(parents=True)
    return write_shards(spec, root, out, shots=SHOTS, seeds=SEEDS, maxcount=5, bad_images=bad_images,
                        log=log or (lambda line: None))


# --- labels and class names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", [7, 3])
def test_label_past_the_declared_class_count_names_the_entry(toy, label):
    _edit_split(toy, lambda s: s["train"][5].__setitem__(1, label))  # dog/train_1.jpg
    spec = dataclasses.replace(SPEC, n_classes=3)
    msg = _error(read_dataset, spec, toy)
    assert msg.startswith(f"toy: train entry 'dog/train_1.jpg' has label {label}, out of range for 3 classes "
                          f"(0..2): {SPEC.split_file(toy)}")


def test_negative_label_names_the_entry(toy):
    _edit_split(toy, lambda s: s["test"][0].__setitem__(1, -1))  # cat/test_0.jpg
    msg = _error(read_split, SPEC, toy)
    assert msg == f"toy: test entry 'cat/test_0.jpg' has label -1, labels are 0-based: {SPEC.split_file(toy)}"


def test_label_past_the_last_class_without_a_declared_count_is_a_gap(toy, tmp_path):
    """Without CoOp's class count, label 7 among labels 0..2 leaves labels 3..6 empty: named, with the item."""
    _edit_split(toy, lambda s: s["test"][4].__setitem__(1, 7))  # fox/test_0.jpg
    msg = _error(_shard, toy, tmp_path / "out")
    assert msg == ("toy: labels [3, 4, 5, 6] have no items (empty classes) but label 7 has (test 'fox/test_0.jpg'):"
                   " labels must run 0..N-1, is 7 out of range?")
    assert not any((tmp_path / "out").iterdir())


def test_two_class_names_for_one_label_in_one_split(toy, tmp_path):
    _edit_split(toy, lambda s: s["train"][6].__setitem__(2, "wolf"))  # dog/train_2.jpg
    msg = _error(_shard, toy, tmp_path / "out")
    assert msg == "toy: label 1 has two class names: 'dog' (train 'dog/train_0.jpg') and 'wolf' (train 'dog/train_2.jpg')"


# --- empty classes ------------------------------------------------------------------------------------------------------


def test_class_without_test_items_is_named_by_shard_and_check_data(toy, tmp_path):
    _edit_split(toy, lambda s: s.__setitem__("test", [e for e in s["test"] if e[1] != 2]))
    expected = "toy: no test items for 1 of 3 classes: labels [2 'fox']"
    assert _error(_shard, toy, tmp_path / "out") == expected
    assert check_dataset(SPEC, toy)["errors"] == [expected]


def test_class_without_train_items_is_named_unless_the_dataset_is_test_only(toy, tmp_path):
    _edit_split(toy, lambda s: s.__setitem__("train", [e for e in s["train"] if e[1] != 0]))
    assert _error(_shard, toy, tmp_path / "out") == "toy: no train items for 1 of 3 classes: labels [0 'cat']"
    # a test-only dataset draws nothing from train: the same listing shards its test split
    manifest = _shard(toy, tmp_path / "test_only", dataclasses.replace(SPEC, test_only=True))
    assert Counter(manifest["split"].to_list()) == {"test": 6}


# --- bad images: error or counted skip ------------------------------------------------------------------------------------


def _drawn_train_paths(root: Path, seed: int) -> list[str]:
    return [it.path for it in sample_few_shot(read_split(SPEC, root)["train"], SHOTS, seed)]


def _break_files(root: Path) -> dict[str, str]:
    """Break 4 images of toy, 2 of them in seed 1's train draw: path -> the reason the skip must record."""
    images = SPEC.image_dir(root)
    drawn = _drawn_train_paths(root, 1)
    cat, fox = next(p for p in drawn if p.startswith("cat/")), next(p for p in drawn if p.startswith("fox/"))
    (images / cat).unlink()
    (images / fox).write_bytes(b"not an image\n")
    (images / "dog/val_1.jpg").write_bytes(b"")
    data = (images / "fox/test_1.jpg").read_bytes()
    (images / "fox/test_1.jpg").write_bytes(data[: len(data) // 2])  # a real JPEG cut short
    return {cat: "missing", fox: "unreadable (UnidentifiedImageError: ", "dog/val_1.jpg": "zero-byte",
            "fox/test_1.jpg": "unreadable ("}


def test_error_mode_stops_at_a_bad_image_in_the_few_shot_draw(toy, tmp_path):
    victim = _drawn_train_paths(toy, 1)[0]
    (SPEC.image_dir(toy) / victim).unlink()
    msg = _error(_shard, toy, tmp_path / "out")
    assert msg == f"toy: train image is missing: {SPEC.image_dir(toy) / victim}"


def test_skip_counts_and_records_each_bad_image(toy, tmp_path):
    reasons = _break_files(toy)
    lines = []
    manifest = _shard(toy, tmp_path / "out", bad_images="skip", log=lines.append)
    skipped = read_skipped(tmp_path / "out")
    assert skipped.height == 4 and skipped.columns == ["split", "path", "label", "classname", "reason"]
    rows = skipped.rows()
    # sorted by split (train, val, test), label, path
    assert [r[:4] for r in rows] == sorted(
        [("train", p, CLASSES.index(p.split("/")[0]), p.split("/")[0]) for p in reasons if "train" in p]
    ) + [("val", "dog/val_1.jpg", 1, "dog"), ("test", "fox/test_1.jpg", 2, "fox")]
    for split, path, _, _, reason in rows:
        assert reason.startswith(reasons[path]), (path, reason)
    assert not set(manifest["path"]) & set(reasons)
    assert "shard toy: skipped 4 bad images (train 2, val 1, test 1; data.bad_images: skip), listed in skipped.csv" \
        in lines
    # every class still has K readable train shots per seed (4 listed, at most 1 bad)
    fewshot = json.loads((tmp_path / "out" / "fewshot.json").read_text())["seeds"]
    label_of = dict(zip(manifest["key"], manifest["label"]))
    for seed in SEEDS:
        assert Counter(label_of[k] for k in fewshot[str(seed)]["train"]) == {0: 2, 1: 2, 2: 2}
    assert Counter(manifest.filter(manifest["split"] == "test")["label"].to_list()) == {0: 2, 1: 2, 2: 1}


def test_skip_shards_the_rest_exactly_like_a_clean_copy(toy, tmp_path):
    """Skipping = never having listed the bad entries: the few-shot draw is over readable items, so a clean copy of
    the data (split file without the skipped entries) gives byte-identical tars, manifest and draws."""
    reasons = _break_files(toy)
    _shard(toy, tmp_path / "skip", bad_images="skip")
    clean = tmp_path / "clean_raw"
    shutil.copytree(toy, clean)

    def drop_skipped(split: dict) -> None:
        for name, entries in split.items():
            split[name] = [e for e in entries if e[0] not in reasons]

    _edit_split(clean, drop_skipped)
    _shard(clean, tmp_path / "clean")  # error mode: would stop if a bad file were still listed
    # the draw really moved: seed 1 drew a bad cat and fox image in the full listing
    assert set(_drawn_train_paths(clean, 1)) != set(_drawn_train_paths(toy, 1))
    names = sorted(p.name for p in (tmp_path / "skip").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "clean").iterdir()) and "train-000000.tar" in names
    for name in names:
        if name != "skipped.csv":
            assert (tmp_path / "skip" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
    assert read_skipped(tmp_path / "clean").height == 0


def test_skip_that_empties_a_class_fails_validation_naming_it(tmp_path, fake):
    """A class whose only train image (or only test image) is skipped fails the manifest gate: few-shot needs it."""
    from promptlab.validate import validate_manifest

    root = tmp_path / "raw"
    fake.split_json(root, "toy", "images", "split_zhou_Toy.json", CLASSES, per_split=(1, 1, 1))
    (SPEC.image_dir(root) / "dog/train_0.jpg").write_bytes(b"")
    (SPEC.image_dir(root) / "fox/test_0.jpg").unlink()
    manifest = _shard(root, tmp_path / "out", bad_images="skip")
    skipped = read_skipped(tmp_path / "out").to_dicts()
    assert [(r["path"], r["reason"]) for r in skipped] == [("dog/train_0.jpg", "zero-byte"),
                                                           ("fox/test_0.jpg", "missing")]
    msg = _error(validate_manifest, manifest, 3, name="m", report=tmp_path / "r.json", classes_in=("train", "test"),
                 skipped=skipped)
    assert ("m: expect_column_values_to_be_between(train_samples) 1 rows e.g. label 1; "
            "m: expect_column_values_to_be_between(test_samples) 1 rows e.g. label 2") in msg
    report = json.loads((tmp_path / "r.json").read_text())
    assert not report["success"] and report["skipped"] == {"count": 2, "items": skipped}


def test_shard_stage_with_skip_reports_the_skip_and_prints_one_line(tmp_path, fake):
    """The stage end to end: params.yaml `data.bad_images: skip`, one truncated test JPEG -> exit 0, the skip in
    skipped.csv, in the validation report (count + list) and in one printed line."""
    fake.split_json(tmp_path / "raw", "synthetic", "images", "split_zhou_Synthetic.json", CLASSES, per_split=(2, 1, 2))
    victim = tmp_path / "raw" / "synthetic" / "images" / "dog" / "test_1.jpg"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"data": {"root": "raw", "shots": 1, "seeds": [1], "bad_images": "skip"}}))
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "shard.py"), "--dataset", "synthetic",
                           "--out", "shards", "--report", "report.json"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    summary = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert summary == ["shard synthetic: skipped 1 bad image (test 1; data.bad_images: skip), listed in skipped.csv"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["success"] and report["skipped"]["count"] == 1
    [item] = report["skipped"]["items"]
    assert {k: item[k] for k in ("split", "path", "label", "classname")} == {
        "split": "test", "path": "dog/test_1.jpg", "label": 1, "classname": "dog"}
    assert item["reason"].startswith("unreadable (OSError: ")
    assert read_skipped(tmp_path / "shards").to_dicts() == [item]
    manifest = read_manifest(tmp_path / "shards")
    assert sample_key(read_split(SPEC_SYN, tmp_path / "raw")["test"][3]) not in set(manifest["key"])
    assert Counter(manifest["split"].to_list()) == {"train": 3, "val": 3, "test": 5}



def test_skip_reasons_are_stable_text_and_two_stage_runs_are_byte_identical(tmp_path, fake):
    """A non-image file under `skip`: PIL's message names the in-memory buffer (`<_io.BytesIO object at 0x…>`);
    the recorded reason must not, so two runs (two processes, two addresses) write identical shards and report."""
    fake.split_json(tmp_path / "raw", "synthetic", "images", "split_zhou_Synthetic.json", CLASSES, per_split=(2, 1, 2))
    (tmp_path / "raw" / "synthetic" / "images" / "fox" / "test_0.jpg").write_bytes(b"plain text, not a JPEG\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"data": {"root": "raw", "shots": 1, "seeds": [1], "bad_images": "skip"}}))
    for run in ("a", "b"):
        proc = subprocess.run([sys.executable, str(REPO / "stages" / "shard.py"), "--dataset", "synthetic",
                               "--out", f"shards_{run}", "--report", f"report_{run}.json"], cwd=tmp_path,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    [item] = read_skipped(tmp_path / "shards_a").to_dicts()
    assert (item["path"], item["reason"]) == ("fox/test_0.jpg", "unreadable (UnidentifiedImageError: cannot identify "
                                                                "image file)")
    names = sorted(p.name for p in (tmp_path / "shards_a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "shards_b").iterdir()) and "skipped.csv" in names
    for name in names:
        assert (tmp_path / "shards_a" / name).read_bytes() == (tmp_path / "shards_b" / name).read_bytes(), name
    assert (tmp_path / "report_a.json").read_bytes() == (tmp_path / "report_b.json").read_bytes()
