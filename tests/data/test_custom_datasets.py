"""Datasets of your own declared in params.yaml (data.custom_datasets): class-folder and split-file layouts go
through the same readers, check-data, shard and features stages and protocols as the built-in ones; a
trimmed copy of a CoOp dataset runs under its own id with its real class count; the class-count check on a
built-in id is reported beside the other problems and says why it is there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptlab.config import validate_params
from promptlab.data.check import check_dataset, check_root
from promptlab.data.readers import read_dataset
from promptlab.data.registry import DATASETS, dataset_spec
from promptlab.data.shards import read_manifest, write_shards
from promptlab.errors import UserError

REPO = Path(__file__).resolve().parents[2]
BIRDS = ["wren", "robin", "blue_jay"]  # folder names; sorted: blue_jay, robin, wren


@pytest.fixture(autouse=True)
def _image_writer(fake):
    global image
    image = fake.image


def _class_folders(root: Path, per_split=(("train", 3), ("test", 2))) -> None:
    """root/birds/pics/<split>/<class>/<k>.jpg, written in reverse order (readers must sort)."""
    for split, n in per_split:
        for c, name in enumerate(reversed(BIRDS)):
            for k in reversed(range(n)):
                image(root / "birds" / "pics" / split / name / f"{k}.jpg", c * 10 + k)


BIRDS_PARAMS = {"folder": "birds", "images": "pics", "split_folders": {"train": "train", "test": "test"},
                "template": "a photo of a {}, a bird.", "rename": {"blue_jay": "blue jay bird"},
                "val_from_train": True}


def _params(tmp_path: Path, **data) -> dict:
    return {"data": {"root": str(tmp_path / "raw"), "custom_datasets": {"birds": BIRDS_PARAMS}, "datasets": ["birds"],
                     "eval_datasets": [], **data}, "eval": {"protocols": ["base2new"]}}


def test_a_class_folder_dataset_reads_with_sorted_folder_names_as_classes(tmp_path):
    _class_folders(tmp_path / "raw")
    validate_params(_params(tmp_path))
    spec = dataset_spec("birds")
    splits = read_dataset(spec, tmp_path / "raw")
    names = {it.label: it.classname for it in splits["train"]}
    assert names == {0: "blue jay bird", 1: "robin", 2: "wren"}  # sorted folders; rename, then _ -> space
    assert [it.path for it in splits["test"][:2]] == ["test/blue_jay/0.jpg", "test/blue_jay/1.jpg"]
    assert [len(splits[s]) for s in ("train", "val", "test")] == [9, 0, 6]
    assert spec.template == "a photo of a {}, a bird." and spec.val_from_train
    report = check_dataset(spec, tmp_path / "raw")
    assert report["status"] == "complete" and report["classes"] == 3 and report["expected_classes"] is None


def test_params_without_the_declaration_forget_it():
    validate_params({"data": {"custom_datasets": {"birds": BIRDS_PARAMS}}})
    assert "birds" in DATASETS
    validate_params({})
    assert "birds" not in DATASETS and "dtd" in DATASETS


def test_a_test_folder_with_other_classes_is_named(tmp_path):
    _class_folders(tmp_path / "raw")
    (tmp_path / "raw/birds/pics/test/owl").mkdir()
    validate_params(_params(tmp_path))
    with pytest.raises(UserError, match=r"^birds: 1 folder under .*test not classes of the first split folder: owl"):
        read_dataset(dataset_spec("birds"), tmp_path / "raw")


@pytest.mark.parametrize("raw, line", [
    ({"custom_datasets": {"dtd": {"folder": "x", "split": "s.json"}}},
     "data.custom_datasets: 'dtd' is a built-in dataset id: give your own data its own id"),
    ({"custom_datasets": {"m": {"folder": "x"}}},
     "data.custom_datasets.m: give exactly one of split (a split_zhou JSON) or split_folders (class folders)"),
    ({"custom_datasets": {"m": {"folder": "x", "split_folders": {"test": "t"}}}},
     "data.custom_datasets.m: split_folders needs train"),
    ({"custom_datasets": {"m": {"folder": "x", "split": "s.json", "template": "a photo."}}},
     "data.custom_datasets.m.template: 'a photo.' must contain exactly one {} for the class name"),
    ({"custom_datasets": {"a/b": {"folder": "x", "split": "s.json"}}},
     "data.custom_datasets: dataset id 'a/b': letters, digits, _ and - only (it names folders)"),
    ({"datasets": ["birdz"]}, "data.datasets: unknown dataset 'birdz' (allowed: "),
])
def test_declaration_errors_are_one_line(raw, line):
    with pytest.raises(UserError) as info:
        validate_params({"data": raw})
    assert str(info.value).startswith(f"params.yaml: {line}") and "\n" not in str(info.value)


def test_custom_ids_serve_as_protocol_datasets_and_targets(tmp_path):
    from promptlab.runs import plan_runs

    targets = {"birds_sketch": {**BIRDS_PARAMS, "folder": "birds-sketch", "split_folders": {"test": "test"},
                                "test_only": True}}
    p = validate_params({"data": {"custom_datasets": {"birds": BIRDS_PARAMS, **targets}, "datasets": ["birds"],
                                  "eval_datasets": ["birds_sketch"], "seeds": [1]},
                         "eval": {"protocols": ["base2new", "domain_shift"],
                                  "domain_shift": {"source": "birds", "targets": ["birds_sketch"]}}})
    runs = plan_runs(p, "zeroshot")
    assert {(r.protocol, r.dataset, r.targets) for r in runs} == {
        ("base2new", "birds", ()), ("domain_shift", "birds", ("birds_sketch",))}
    with pytest.raises(UserError, match="'birds_sketch' is a test-only dataset"):
        validate_params({"data": {"custom_datasets": targets, "datasets": ["birds_sketch"]}})


def test_a_trimmed_coop_split_runs_under_its_own_id_with_its_real_class_count(tmp_path, fake):
    """CoOp's DTD cut to 3 of its 47 classes: as `dtd` it fails (and says why); declared as `dtd_small` with
    relabel the labels 0, 5, 46 become 0, 1, 2 and it shards with 3 classes."""
    classes = [f"texture{i}" for i in range(47)]
    folder = fake.split_json(tmp_path, "dtd", "images", "split_zhou_DescribableTextures.json", classes,
                             per_split=(2, 1, 1))
    split = json.loads((folder / "split_zhou_DescribableTextures.json").read_text())
    keep = {0, 5, 46}
    (folder / "split_zhou_DescribableTextures.json").write_text(json.dumps(
        {s: [e for e in v if e[1] in keep] for s, v in split.items()}))
    [error] = check_dataset(DATASETS["dtd"], tmp_path)["errors"]  # CoOp's labels keep their gaps
    assert error.startswith("dtd: labels [1, 2, 3, 4, 6, … 39 more] have no items (empty classes)")
    validate_params({"data": {"custom_datasets": {"dtd_small": {
        "folder": "dtd", "split": "split_zhou_DescribableTextures.json", "relabel": True, "n_classes": 3,
        "template": "{} texture."}}}})
    out = tmp_path / "out"
    out.mkdir()
    manifest = write_shards(dataset_spec("dtd_small"), tmp_path, out, shots=1, seeds=[1], maxcount=10,
                            log=lambda line: None)
    assert json.loads((out / "classnames.json").read_text()) == ["texture0", "texture5", "texture46"]
    assert sorted(set(manifest["label"])) == [0, 1, 2]
    assert check_root(tmp_path, ["dtd_small"])["ok"]


def test_the_class_count_is_reported_beside_a_bad_image(tmp_path, fake):
    """imagenet_a with 2 of CoOp's 200 folders and a truncated image: the shard run names both problems."""
    fake.imagenet_a(tmp_path)
    victim = tmp_path / "imagenet-adversarial/imagenet-a/n03773504/n03773504_a.jpg"
    victim.write_bytes(victim.read_bytes()[:40])
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError) as info:
        write_shards(DATASETS["imagenet_a"], tmp_path, tmp_path / "out", shots=1, seeds=[1], maxcount=10,
                     log=lambda line: None)
    msg = str(info.value)
    assert msg.startswith("imagenet_a: 2 classes under ") and "CoOp's data has 200 ('imagenet_a' means CoOp's full" \
        " dataset; a class subset or your own data: give it its own id in data.custom_datasets" in msg
    assert "; imagenet_a: test image is unreadable (" in msg and msg.endswith(f": {victim}")
    assert "\n" not in msg


def test_the_declared_class_count_is_checked(tmp_path):
    _class_folders(tmp_path / "raw")
    validate_params({"data": {"custom_datasets": {"birds": {**BIRDS_PARAMS, "n_classes": 4}}}})
    report = check_dataset(dataset_spec("birds"), tmp_path / "raw")
    assert report["errors"] == ["3 classes, data.custom_datasets.birds.n_classes expects 4"]


def test_shard_and_features_stages_run_a_custom_dataset(tmp_path, loaded_clip):
    """The stages end to end on a class-folder dataset declared in params.yaml, and check-data knows its id."""
    from safetensors.torch import save_file

    from promptlab.io import load_tensors

    _class_folders(tmp_path / "raw")
    save_file(loaded_clip.model.state_dict(), str(tmp_path / "clip.safetensors"))
    params = _params(tmp_path, shots=2, seeds=[1])
    params["model"] = {"pretrained": "clip.safetensors"}
    params["features"] = {"train_views": 1, "patches": False}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    def stage(*args):
        proc = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True,
                              env={"PYTHONPATH": str(REPO), "PATH": ""})
        assert proc.returncode == 0, proc.stderr
        return proc

    stage(str(REPO / "stages/shard.py"), "--dataset", "birds", "--out", "shards", "--report", "shard.json")
    manifest = read_manifest(tmp_path / "shards")
    assert json.loads((tmp_path / "shards/classnames.json").read_text()) == ["blue jay bird", "robin", "wren"]
    assert manifest.group_by("split").len().sort("split").rows() == [("test", 6), ("train", 6), ("val", 3)]
    stage(str(REPO / "stages/features.py"), "--shards", "shards", "--out", "features", "--report", "f.json")
    tensors, meta = load_tensors(tmp_path / "features/test.safetensors")
    assert tensors["global"].shape[0] == 6 and tensors["labels"].tolist() == [0, 0, 1, 1, 2, 2]
    out = stage("-m", "promptlab", "check-data", "--root", "raw", "--json").stdout
    assert json.loads(out)["datasets"]["birds"]["status"] == "complete"
