"""A pixel method through the run flow (runner.train_run + scorer + evaluate_run) on real shards: it trains on
the recorded draw's pixels, scores the test shards, and its saved prompt reloads to the same scores."""

from __future__ import annotations

import torch

from promptlab.artifacts import Artifacts
from promptlab.data.pixels import PixelOptions
from promptlab.data.registry import DATASETS
from promptlab.data.shards import read_manifest, write_shards
from promptlab.data.synthetic import write_world
from promptlab.evaluate import evaluate_run
from promptlab.io import read_json, save_tensors
from promptlab.methods.ivlp.config import IVLPConfig
from promptlab.prompts.bank import build_class_set
from promptlab.runner import Training, scorer, train_run
from promptlab.runs import Run
from promptlab.saved_prompt import load_prompt, save_prompt


def test_ivlp_base2new_run_on_shards(tmp_path, monkeypatch, frozen_clip):
    monkeypatch.chdir(tmp_path)  # the run's checkpoint goes to ./data/checkpoints
    root, shards, banks = tmp_path / "raw", tmp_path / "shards", tmp_path / "prompts"
    write_world(root, seed=0, image_size=32, train_per_class=2, val_per_class=1, test_per_class=1,
                shifted_domains=[])
    (shards / "synthetic").mkdir(parents=True)
    write_shards(DATASETS["synthetic"], root, shards / "synthetic", shots=1, seeds=[1], maxcount=40,
                 log=lambda _: None)
    names = read_json(shards / "synthetic" / "classnames.json")
    with torch.no_grad():
        classes = build_class_set(frozen_clip.text, names, "a photo of a {}.", ensembles=())
    save_tensors(banks / "synthetic" / "bank.safetensors", classes.tensors(),
                 {"classnames": names, "template": classes.template})
    art = Artifacts(shards, tmp_path / "features", banks, PixelOptions(crop_scale_min=0.5))
    cfg = IVLPConfig(depth_text=2, depth_vision=2, epochs=1, batch_size=8, warmup_epochs=0)
    logged = []
    method, trained, n_train = train_run(Run("base2new", "synthetic", 1, 1), "ivlp", cfg, frozen_clip, art,
                                         lambda e, r: logged.append(r))
    assert n_train == len(names) // 2 and len(trained) == len(names) // 2  # 1 shot of each base class
    assert len(logged) == 1 and logged[0]["loss"] > 0
    result = evaluate_run("base2new", "synthetic", (), len(names), scorer(Training(tmp_path, method, trained), art))
    test_rows = read_manifest(shards / "synthetic").filter(split="test").height
    assert result["base"]["total"] + result["new"]["total"] == test_rows
    save_prompt(tmp_path / "run", method, trained, {"protocol": "base2new"})
    again = evaluate_run("base2new", "synthetic", (), len(names),
                         scorer(Training(tmp_path, load_prompt(tmp_path / "run", frozen_clip), trained), art))
    assert again == result
