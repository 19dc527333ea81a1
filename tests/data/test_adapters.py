"""Readers of every CoOp $DATA layout (readers.py) on tiny fake roots, and sharding the layouts without a split
JSON: labels, class names (CoOp's renames, ImageNet's duplicated names keyed by wnid, ImageNet-A/R's
sorted-present-folders rule), split counts, sorted order, one-line errors."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import polars as pl
import pytest

from promptlab.data.coop_format import Item, classnames, final_name, read_split
from promptlab.data.readers import READERS, read_dataset
from promptlab.data.registry import DATASETS, READER_KINDS, REAL_DATASETS
from promptlab.data.shards import write_shards
from promptlab.errors import UserError

# docs/architecture.md "data.root": the 15 real dataset ids and their folders under data.root (contract).
CONTRACT_FOLDERS = {
    "imagenet": "imagenet", "caltech101": "caltech-101", "oxford_pets": "oxford_pets",
    "stanford_cars": "stanford_cars", "oxford_flowers": "oxford_flowers", "food101": "food-101",
    "fgvc_aircraft": "fgvc_aircraft", "sun397": "sun397", "dtd": "dtd", "eurosat": "eurosat", "ucf101": "ucf101",
    "imagenet_v2": "imagenetv2", "imagenet_sketch": "imagenet-sketch", "imagenet_a": "imagenet-adversarial",
    "imagenet_r": "imagenet-rendition",
}


def _unchecked(dataset_id: str, **changes):
    """The registry spec without CoOp's class count (fake roots have a handful of classes)."""
    return dataclasses.replace(DATASETS[dataset_id], n_classes=None, **changes)


def _by_label(items: list[Item]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for it in items:
        out.setdefault(it.label, []).append(it.path)
    return out


# --- the registry ------------------------------------------------------------------------------------------------


def test_registry_has_the_contract_ids_and_folders():
    assert sorted(REAL_DATASETS) == sorted(CONTRACT_FOLDERS)
    for dataset_id, folder in CONTRACT_FOLDERS.items():
        spec = DATASETS[dataset_id]
        assert spec.folder == folder and spec.reader in READERS and spec.hint.startswith("see CoOp DATASETS.md")
    assert {i for i in CONTRACT_FOLDERS if DATASETS[i].test_only} == {
        "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"}
    assert all(DATASETS[i].generated for i in DATASETS if i.startswith("synthetic"))


def test_every_reader_kind_has_its_reader():
    """datasets.yaml's `reader` values (registry.READER_KINDS) are exactly the reader functions' keys."""
    assert sorted(READER_KINDS) == sorted(READERS)
    with pytest.raises(ValueError, match="unknown reader 'csv'"):
        dataclasses.replace(DATASETS["caltech101"], reader="csv")


# --- class_folders: ImageNet --------------------------------------------------------------------------------------


def test_imagenet_labels_follow_classnames_lines_and_duplicates_stay_apart(tmp_path, fake):
    fake.imagenet(tmp_path)
    out = read_dataset(DATASETS["imagenet"], tmp_path)
    assert {s: len(v) for s, v in out.items()} == {"train": 20, "val": 0, "test": 8}  # val = drawn from train
    names = classnames(out["train"] + out["test"])
    assert names == ["tench", "missile", "missile", "great white shark"]  # `_` -> space; both missiles kept
    by_label = _by_label(out["train"])
    assert all(p.startswith(f"train/{wnid}/{wnid}_") for label, (wnid, _) in enumerate(fake.WNIDS)
               for p in by_label[label])
    assert {p.split("/")[1] for p in _by_label(out["test"])[2]} == {"n04008634"}  # keyed by wnid, not by name
    assert all(p.startswith("val/") for p in (it.path for it in out["test"]))


def test_imagenet_files_are_sorted_and_hidden_entries_skipped(tmp_path, fake):
    fake.imagenet(tmp_path)
    out = read_dataset(DATASETS["imagenet"], tmp_path)
    paths = [it.path for it in out["train"] if it.label == 0]
    assert paths == [f"train/n01440764/n01440764_{k}.JPEG" for k in range(5)]  # created in reverse order
    assert not any(".DS_Store" in it.path or "not_an_image_dir" in it.path for v in out.values() for it in v)


def test_imagenet_missing_class_folder_is_one_line_naming_it(tmp_path, fake):
    folder = fake.imagenet(tmp_path)
    for f in (folder / "images" / "val" / "n04008634").iterdir():
        f.unlink() if f.is_file() else f.rmdir()
    (folder / "images" / "val" / "n04008634").rmdir()
    with pytest.raises(UserError) as info:
        read_dataset(DATASETS["imagenet"], tmp_path)
    msg = str(info.value)
    assert msg.startswith("imagenet: 1 class folder of 4 missing under ") and "n04008634" in msg
    assert "see CoOp DATASETS.md: ImageNet" in msg and "\n" not in msg


def test_imagenet_extra_folder_is_refused(tmp_path, fake):
    folder = fake.imagenet(tmp_path)
    fake.image(folder / "images" / "train" / "n09999999" / "x.JPEG")
    with pytest.raises(UserError, match=r"imagenet: 1 folder under .*train not classes of classnames.txt: n09999999"):
        read_dataset(DATASETS["imagenet"], tmp_path)


def test_imagenet_missing_classnames_txt(tmp_path, fake):
    (fake.imagenet(tmp_path) / "classnames.txt").unlink()
    with pytest.raises(UserError, match=r"^imagenet: classnames.txt missing: .*imagenet/classnames.txt \(get it"):
        read_dataset(DATASETS["imagenet"], tmp_path)


def test_classnames_txt_line_without_a_name_names_the_line(tmp_path, fake):
    folder = fake.imagenet(tmp_path)
    (folder / "classnames.txt").write_text("n01440764 tench\nn03773504\n")
    with pytest.raises(UserError, match=r"imagenet: line 2 of .*classnames.txt no class name: 'n03773504'"):
        read_dataset(DATASETS["imagenet"], tmp_path)


# --- class_folders: the ImageNet variants ----------------------------------------------------------------------------


def test_imagenet_v2_folder_i_is_line_i(tmp_path, fake):
    fake.imagenet_v2(tmp_path, n=12)
    out = read_dataset(DATASETS["imagenet_v2"], tmp_path)
    assert out["train"] == [] and out["val"] == [] and len(out["test"]) == 24
    by_label = _by_label(out["test"])
    assert by_label[10] == ["10/10a.jpeg", "10/10b.jpeg"]  # numeric, not text, folder order; files sorted
    assert classnames(out["test"]) == [f"class {i}" for i in range(12)]


def test_imagenet_sketch_needs_every_class(tmp_path, fake):
    folder = fake.imagenet_sketch(tmp_path)
    out = read_dataset(DATASETS["imagenet_sketch"], tmp_path)
    assert Counter(it.label for it in out["test"]) == {0: 2, 1: 2, 2: 2, 3: 2}
    assert out["test"][0].path == "n01440764/sketch_0.JPEG"
    for f in (folder / "images" / "n01440764").iterdir():
        f.unlink() if f.is_file() else f.rmdir()
    (folder / "images" / "n01440764").rmdir()
    with pytest.raises(UserError, match="imagenet_sketch: 1 class folder of 4 missing .*n01440764"):
        read_dataset(DATASETS["imagenet_sketch"], tmp_path)


@pytest.mark.parametrize("dataset_id, folder, images", [("imagenet_a", "imagenet-adversarial", "imagenet-a"),
                                                        ("imagenet_r", "imagenet-rendition", "imagenet-r")])
def test_imagenet_a_r_classes_are_the_present_folders_sorted(tmp_path, fake, dataset_id, folder, images):
    fake.imagenet_a(tmp_path, present=("n04355338", "n03773504"), folder_name=folder, images=images)
    out = read_dataset(DATASETS[dataset_id], tmp_path)
    assert classnames(out["test"]) == ["missile", "great white shark"]  # n03773504 < n04355338; README skipped
    assert _by_label(out["test"]) == {0: ["n03773504/n03773504_a.jpg", "n03773504/n03773504_b.jpg"],
                                      1: ["n04355338/n04355338_a.jpg", "n04355338/n04355338_b.jpg"]}


def test_imagenet_a_folder_not_in_classnames_is_refused(tmp_path, fake):
    fake.imagenet_a(tmp_path, present=("n03773504", "n00000001"))
    with pytest.raises(UserError, match="imagenet_a: 1 folder under .* not in classnames.txt: n00000001"):
        read_dataset(DATASETS["imagenet_a"], tmp_path)


# --- variant_lists: FGVC-Aircraft -------------------------------------------------------------------------------------


def test_fgvc_labels_are_variants_lines_and_names_keep_spaces(tmp_path, fake):
    fake.fgvc(tmp_path)
    out = read_dataset(DATASETS["fgvc_aircraft"], tmp_path)
    assert {s: len(v) for s, v in out.items()} == {"train": 4, "val": 4, "test": 4}
    assert classnames(out["train"]) == fake.VARIANTS  # "Cessna 172", "F-16A/B" verbatim
    assert Item("test", "7200000.jpg", 2, "F-16A/B") in out["test"]
    assert all((tmp_path / "fgvc_aircraft" / "images" / it.path).is_file() for v in out.values() for it in v)


def test_fgvc_unknown_variant_names_file_and_line(tmp_path, fake):
    folder = fake.fgvc(tmp_path)
    (folder / "images_variant_val.txt").write_text("1000000 707-320\n1000001 Boeing 999\n")
    with pytest.raises(UserError, match=r"fgvc_aircraft: line 2 of .*images_variant_val.txt: class 'Boeing 999'"):
        read_dataset(DATASETS["fgvc_aircraft"], tmp_path)


def test_fgvc_image_id_escaping_the_folder_is_refused(tmp_path, fake):
    folder = fake.fgvc(tmp_path)
    (folder / "images_variant_test.txt").write_text("../../etc/passwd 707-320\n")
    with pytest.raises(UserError, match=r"escapes the dataset folder: '../../etc/passwd.jpg' in .*variant_test"):
        read_dataset(DATASETS["fgvc_aircraft"], tmp_path)


def test_fgvc_missing_split_list(tmp_path, fake):
    (fake.fgvc(tmp_path) / "images_variant_val.txt").unlink()
    with pytest.raises(UserError, match=r"^fgvc_aircraft: val list missing: .*images_variant_val.txt"):
        read_dataset(DATASETS["fgvc_aircraft"], tmp_path)


# --- split_json with CoOp's renames -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset_id, raw, final", [
    ("caltech101", "airplanes", "airplane"), ("caltech101", "Faces", "face"), ("caltech101", "Leopards", "leopard"),
    ("caltech101", "Motorbikes", "motorbike"), ("caltech101", "face", "face"),  # CoOp's JSON carries "face"
    ("caltech101", "dollar_bill", "dollar bill"), ("eurosat", "AnnualCrop", "Annual Crop Land"),
    ("eurosat", "SeaLake", "Sea or Lake"), ("eurosat", "Annual Crop Land", "Annual Crop Land"),
    ("food101", "apple_pie", "apple pie"), ("oxford_pets", "Faces", "Faces"),
])
def test_final_name(dataset_id, raw, final):
    assert final_name(DATASETS[dataset_id], raw) == final


def test_split_json_datasets_apply_coop_renames(tmp_path, fake):
    fake.eurosat(tmp_path)
    out = read_split(DATASETS["eurosat"], tmp_path)
    assert classnames(out["train"])[:4] == ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land",
                                            "Highway or Road"]
    fake.split_json(tmp_path, "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                    ["face", "Leopards", "accordion"])
    assert classnames(read_dataset(DATASETS["caltech101"], tmp_path)["test"]) == ["face", "leopard", "accordion"]


@pytest.mark.parametrize("text, match", [
    ("{not json", r"dtd: split file is not valid JSON \(.*line 1\): .*split_zhou_DescribableTextures.json"),
    ('{"test": [["a.jpg", 0]]}', r"dtd: split entry is not \[path, label, classname\]: \['a.jpg', 0\] in "),
    ('{"test": [["a.jpg", "x", "c"]]}', r"dtd: split entry is not .*'x'"),
])
def test_malformed_split_file_is_one_line(tmp_path, text, match):
    (tmp_path / "dtd" / "images").mkdir(parents=True)
    (tmp_path / "dtd" / "split_zhou_DescribableTextures.json").write_text(text)
    with pytest.raises(UserError, match=match):
        read_dataset(DATASETS["dtd"], tmp_path)


def test_split_json_through_read_dataset_names_the_missing_folder(tmp_path):
    with pytest.raises(UserError, match=r"^dtd: dataset folder missing: .*dtd \(get it: see CoOp DATASETS.md: DTD"):
        read_dataset(DATASETS["dtd"], tmp_path)


# --- sharding the new layouts -----------------------------------------------------------------------------------------


def test_imagenet_shards_val_drawn_from_train_disjoint_from_train_shots(tmp_path, fake):
    fake.imagenet(tmp_path / "raw", train=5, test=2)
    out = tmp_path / "out"
    out.mkdir()
    lines = []
    manifest = write_shards(_unchecked("imagenet"), tmp_path / "raw", out, shots=2, seeds=[1, 2], maxcount=100,
                            log=lines.append)
    draws = json.loads((out / "fewshot.json").read_text())["seeds"]
    rows = {k: (s, p) for k, s, p in zip(manifest["key"], manifest["split"], manifest["path"])}
    for seed in ("1", "2"):
        train_paths = {rows[k][1] for k in draws[seed]["train"]}
        val_paths = {rows[k][1] for k in draws[seed]["val"]}
        assert len(train_paths) == 8 and len(val_paths) == 8  # 2 per class each (min(K, 4) = 2)
        assert not train_paths & val_paths and all(p.startswith("train/") for p in val_paths)
    val = manifest.filter(pl.col("split") == "val")
    assert set(val["label"].to_list()) == {0, 1, 2, 3}
    assert val["key"].str.starts_with("val_").all()  # own keys, never a train row's
    assert set(manifest.filter(pl.col("split") == "test")["path"].str.slice(0, 4)) == {"val/"}
    assert json.loads((out / "classnames.json").read_text()) == ["tench", "missile", "missile", "great white shark"]
    assert lines[0] == "shard imagenet: listed train 20, val 0, test 8" and lines[-1] == "shard imagenet: test 8/8"


def test_test_only_variant_shards_every_image(tmp_path, fake):
    fake.imagenet_a(tmp_path / "raw")
    out = tmp_path / "out"
    out.mkdir()
    manifest = write_shards(_unchecked("imagenet_a"), tmp_path / "raw", out, shots=16, seeds=[1], maxcount=3,
                            log=lambda line: None)
    assert set(manifest["split"]) == {"test"} and manifest.height == 4
    assert manifest["label"].to_list() == [0, 0, 1, 1]
    assert json.loads((out / "fewshot.json").read_text()) == {"shots": None, "seeds": {}}


def test_shard_refuses_a_class_count_other_than_coops(tmp_path, fake):
    fake.imagenet_a(tmp_path)  # 2 of CoOp's 200 folders
    with pytest.raises(UserError, match=r"^imagenet_a: 2 classes under .*, CoOp's data has 200 \('imagenet_a' means "
                                        r"CoOp's full dataset; .* data.custom_datasets, .*\); get it: see CoOp"):
        write_shards(DATASETS["imagenet_a"], tmp_path, tmp_path, shots=1, seeds=[1], maxcount=10, log=print)
