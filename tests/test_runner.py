"""Which runs a method makes (runs.plan_runs), which trainings are shared (training_key), the nested K-shot
subsamples few-shot curves train on (artifacts: nested_subsample, training_data), and that one training's
scores are computed once for all the runs sharing it (runner.scorer)."""

from __future__ import annotations

import json

import pytest
import torch

from promptlab.config import validate_params
from promptlab.errors import UserError
from promptlab.io import save_tensors, write_json
from promptlab.artifacts import Artifacts, nested_subsample
from promptlab.runs import Run, plan_runs, run_config


def test_plan_covers_every_protocol_in_order():
    every = ["base2new", "domain_shift", "cross_dataset", "few_shot"]
    p = validate_params({"data": {"seeds": [1, 2]}, "eval": {"protocols": every, "few_shot": {
        "shots": [1, 4, 16], "methods": ["coop"]}}})
    coop = plan_runs(p, "coop")
    assert [str(r.where) for r in coop] == [
        "base2new/synthetic/seed1", "base2new/synthetic/seed2",
        "domain_shift/synthetic/seed1", "domain_shift/synthetic/seed2",
        "cross_dataset/synthetic/seed1", "cross_dataset/synthetic/seed2",
        *[f"few_shot/synthetic/shots{k}/seed{s}" for k in (1, 4, 16) for s in (1, 2)]]
    assert coop[2].targets == ("synthetic_sketch", "synthetic_noise") and coop[4].targets == ("synthetic_shapes",)
    assert all(r.shots == 16 for r in coop[:6]) and [r.shots for r in coop[6:]] == [1, 1, 4, 4, 16, 16]
    assert [r.protocol for r in plan_runs(p, "zeroshot")] == ["base2new"] * 2 + ["domain_shift"] * 2 + \
        ["cross_dataset"] * 2  # few-shot curves only for eval.few_shot.methods
    only = validate_params({"eval": {"protocols": ["few_shot"], "few_shot": {"shots": [2]}}})
    assert [str(r.where) for r in plan_runs(only, "zeroshot")] == [f"few_shot/synthetic/shots2/seed{s}"
                                                                   for s in (1, 2, 3)]


def test_all_class_trainings_are_shared_and_nothing_else():
    p = validate_params({"data": {"seeds": [1]}, "eval": {"protocols": ["base2new", "domain_shift", "cross_dataset", "few_shot"],
                                                          "few_shot": {"shots": [1, 16]}}})
    cfg = p.coop
    keys = {str(r.where): r.training_key(run_config(r, cfg, None)) for r in plan_runs(p, "coop")}
    shared = keys["domain_shift/synthetic/seed1"]
    assert keys["cross_dataset/synthetic/seed1"] == shared == keys["few_shot/synthetic/shots16/seed1"]
    assert keys["few_shot/synthetic/shots1/seed1"] != shared and keys["base2new/synthetic/seed1"] != shared
    assert Run("domain_shift", "synthetic", 2, 16).training_key(cfg) != shared  # another seed
    # CoOp's per-shot epochs make the 16-shot point its own training
    run16 = Run("few_shot", "synthetic", 1, 16)
    tuned = run_config(run16, cfg, {1: 5, 16: 7})
    assert tuned.epochs == 7 and cfg.epochs == 200 and run16.training_key(tuned) != shared
    assert run_config(Run("domain_shift", "synthetic", 1, 16), cfg, {16: 7}) is cfg
    assert run_config(run16, p.zeroshot, {1: 5, 16: 7}) is p.zeroshot  # nothing to train in epochs


def test_nested_subsample():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 1 + [0] * 2)  # class 0 has 8 rows, spread out
    picks = {k: nested_subsample(labels, k, seed=3) for k in (1, 2, 4, 16)}
    for k, rows in picks.items():
        assert rows.tolist() == sorted(set(rows.tolist()))
        counts = torch.bincount(labels[rows], minlength=3).tolist()
        assert counts == [min(k, 8), min(k, 3), min(k, 1)]
    assert set(picks[1].tolist()) < set(picks[2].tolist()) < set(picks[4].tolist()) < set(picks[16].tolist())
    assert picks[16].tolist() == list(range(12))  # K above every class: the whole draw
    assert torch.equal(nested_subsample(labels, 2, seed=3), picks[2])  # seeded
    draws = {tuple(nested_subsample(labels, 2, seed=s).tolist()) for s in range(10)}
    assert len(draws) > 1  # and the seed matters


def _write_split(root, split: str, labels: list[int], keys: list[str]) -> None:
    n = len(labels)
    feats = torch.arange(n * 2 * 4, dtype=torch.float32).view(n, 2, 4)  # [N, V=2, D=4]: row i is recognisable
    save_tensors(root / f"data/features/d/{split}.safetensors",
                 {"global": feats, "labels": torch.tensor(labels)}, {"keys": keys})


def test_training_data_takes_nested_shots_of_the_sharded_draw(tmp_path):
    training_data = Artifacts(tmp_path / "data/shards", tmp_path / "data/features", tmp_path / "data/prompts").training_data
    # 3 classes; the seed-1 draw holds 4 train and 2 val shots per class; one unrelated row in each split
    train_keys = [f"t{i}" for i in range(13)]
    train_labels = [i // 4 for i in range(12)] + [0]
    val_keys, val_labels = [f"v{i}" for i in range(7)], [0, 0, 1, 1, 2, 2, 1]
    _write_split(tmp_path, "train", train_labels, train_keys)
    _write_split(tmp_path, "val", val_labels, val_keys)
    write_json(tmp_path / "data/shards/d/fewshot.json",
               {"shots": 4, "seeds": {"1": {"train": train_keys[:12], "val": val_keys[:6]}}})
    full = training_data("d", 1, [0, 1, 2])
    assert full.labels.tolist() == train_labels[:12]
    two = training_data("d", 1, [0, 1, 2], shots=2)
    assert torch.bincount(two.labels).tolist() == [2, 2, 2]
    rows = [int(f[0, 0]) // 8 for f in two.features]  # each row's index in the file, from its values
    assert set(rows) <= set(range(12)) and [train_labels[r] for r in rows] == two.labels.tolist()
    one = training_data("d", 1, [0, 1, 2], shots=1)
    assert set(int(f[0, 0]) // 8 for f in one.features) < set(rows)  # nested
    assert torch.equal(training_data("d", 1, [0, 1, 2], shots=4).features, full.features)  # K = sharded K
    val = training_data("d", 1, [0, 1, 2], split="val", shots=1)
    assert torch.bincount(val.labels).tolist() == [1, 1, 1]  # min(K, 4) per class from the val draw
    base = training_data("d", 1, [1, 2], shots=1)  # restricted to labels 1, 2 and relabelled 0, 1
    assert base.labels.tolist() == [0, 1]
    with pytest.raises(UserError, match="8 shots asked, the shards hold 4"):
        training_data("d", 1, [0, 1, 2], shots=8)


def test_runs_of_one_training_score_each_test_split_once(monkeypatch):
    import promptlab.runner as runner
    from promptlab.evaluate import evaluate_run
    from promptlab.prompts.bank import ClassSet

    calls = []

    def fake_score(method, batches, classes):
        calls.append((batches, tuple(classes.names)))
        return {"correct": len(calls), "total": 10, "acc": 10.0 * len(calls)}

    class Art:
        def class_set(self, d):
            return ClassSet(["a", "b", "c", "d"], "{}.", torch.zeros(4, 1))

    monkeypatch.setattr(runner, "score_batches", fake_score)
    monkeypatch.setattr(runner, "test_batches", lambda method, art, d, keep: (d, keep))
    method = type("M", (), {"open_vocabulary": True})()
    shared = runner.Training("ds", method, Art().class_set("src"))
    ds = evaluate_run("domain_shift", "src", ("t1",), 4, runner.scorer(shared, Art()))
    cross = evaluate_run("cross_dataset", "src", ("t2",), 4, runner.scorer(shared, Art()))
    assert [c[0] for c in calls] == [("src", None), ("t1", None), ("t2", None)]  # src scored once
    assert cross["targets"]["src"] == ds["targets"]["src"] and cross["targets"]["t2"]["correct"] == 3
    # another training is scored afresh; base2new scores each half against its own classes only
    other = runner.Training("other", method, Art().class_set("src").subset([0, 1]))
    b2n = evaluate_run("base2new", "src", (), 4, runner.scorer(other, Art()))
    assert calls[3:] == [(("src", [0, 1]), ("a", "b")), (("src", [2, 3]), ("c", "d"))]
    assert (b2n["base"]["correct"], b2n["new"]["correct"]) == (4, 5)
    # a closed-vocabulary method scores only classes it was trained on: new is None, nothing computed
    closed = runner.Training("c", type("M", (), {"open_vocabulary": False})(), Art().class_set("src").subset([0, 1]))
    b2n = evaluate_run("base2new", "src", (), 4, runner.scorer(closed, Art()))
    assert b2n["new"] is None and b2n["base"]["correct"] == 6 and len(calls) == 6


def _tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_run_method_writes_the_same_bytes_for_any_worker_count(tmp_path, monkeypatch, frozen_clip):
    """The run stage trains its groups in forked worker processes: outputs (prompts, metrics records, curves)
    are byte-identical with one process and with two."""
    from miniature import shards_and_bank

    from promptlab.clip.extract import extract_split
    from promptlab.runner import plan_groups, run_method

    monkeypatch.chdir(tmp_path)  # checkpoints go to ./data/checkpoints
    shards, banks, _ = shards_and_bank(tmp_path, frozen_clip, shots=2, seeds=[1, 2], maxcount=200)
    feats = tmp_path / "features"
    for split, views in (("train", 2), ("val", 1), ("test", 1)):
        tensors, keys = extract_split(frozen_clip.loaded, shards / "synthetic", split, n_views=views, seed=0,
                                      batch_size=64, patches=False)
        save_tensors(feats / "synthetic" / f"{split}.safetensors", tensors, {"keys": keys})
    art = Artifacts(shards, feats, banks)
    p = validate_params({"data": {"shots": 2, "seeds": [1, 2]}, "coop": {"epochs": 3, "batch_size": 8},
                         "eval": {"protocols": ["base2new", "few_shot"], "few_shot": {
                             "shots": [1, 2], "methods": ["coop"], "epochs": {1: 2, 2: 3}}}})
    groups = plan_groups(p, "coop")
    assert [[str(r.where) for r in g.runs] for g in groups][:2] == [["base2new/synthetic/seed1"],
                                                                     ["base2new/synthetic/seed2"]]
    assert len(groups) == 6  # 2 seeds x (base2new, 1 shot, 2 shots): nothing shared without domain_shift
    trees = []
    for workers in (1, 2):
        out, metrics, curves = (tmp_path / f"w{workers}" / d for d in ("out", "metrics", "curves"))
        run_method(p, "coop", frozen_clip, art, out, metrics, curves, workers=workers)
        trees.append({d: _tree(tmp_path / f"w{workers}" / d) for d in ("out", "metrics", "curves")})
    assert trees[0] == trees[1]
    records = {k: json.loads(v) for k, v in trees[0]["metrics"].items()}
    assert sorted(records) == sorted(f"{r.where.as_posix()}.json" for g in groups for r in g.runs)
    assert all(r["base"]["total"] > 0 for k, r in records.items() if k.startswith("base2new"))
    assert len([k for k in trees[0]["out"] if k.endswith("prompt.safetensors")]) == 6
    # seeds train differently (the workers did not all run the same training)
    assert trees[0]["out"]["base2new/synthetic/seed1/prompt.safetensors"] != \
        trees[0]["out"]["base2new/synthetic/seed2/prompt.safetensors"]
