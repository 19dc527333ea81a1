"""A pixel method through the run flow (runner.train_run + scorer + evaluate_run) on real shards: it trains on
the recorded draw's pixels, scores the test shards, and its saved prompt reloads to the same scores."""

from __future__ import annotations

from miniature import shards_and_bank

from promptlab.artifacts import Artifacts
from promptlab.data.pixels import PixelOptions
from promptlab.data.shards import read_manifest
from promptlab.evaluate import evaluate_run
from promptlab.methods.ivlp.config import IVLPConfig
from promptlab.runner import Training, scorer, train_run
from promptlab.runs import Run
from promptlab.saved_prompt import load_prompt, save_prompt


def test_ivlp_base2new_run_on_shards(tmp_path, monkeypatch, frozen_clip):
    monkeypatch.chdir(tmp_path)  # the run's checkpoint goes to ./data/checkpoints
    shards, banks, names = shards_and_bank(tmp_path, frozen_clip, shots=1, seeds=[1], maxcount=40)
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
