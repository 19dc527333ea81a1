"""The documented paper switch (`cp configs/paper.yaml params.yaml && dvc repro`) through DVC itself: no stage
of the embedded world or the tiny CLIP exists, and a repro on a miniature CoOp-format root with a local open_clip
checkpoint runs exactly code, model, listing, shard, descriptions, features, prompts, run and report.
From that repo, what README "Beyond one machine" says is tested: a local-directory remote (push, fresh clone,
pull, repro re-runs only listing) and two experiments run in parallel by DVC's queue."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from dvc_helpers import DVC, ENV, REPO, eurosat_root, lock_stages, make_repo, merge, random_checkpoint, sh, stages_run


def _paper_params(data_root: Path, checkpoint: Path) -> dict:
    """configs/paper.yaml made small: one dataset, cpu, one seed, 2 shots, two cheap methods."""
    paper = yaml.safe_load((REPO / "configs/paper.yaml").read_text())
    return merge(paper, {
        "embedded": {"after_clip": str(checkpoint)},  # a local checkpoint: the model stage waits for its file
        "model": {"name": "promptlab-tiny", "pretrained": str(checkpoint), "device": "cpu"},
        "data": {"root": str(data_root), "datasets": ["eurosat"], "eval_datasets": [], "shots": 2, "seeds": [1]},
        "features": {"batch_size": 16, "train_views": 1, "num_workers": 0, "precision": "fp32", "patches": False},
        "methods": ["zeroshot", "linear_probe"],
        "eval": {"protocols": ["base2new"]},
    })


def test_paper_config_generates_no_embedded_stage(tmp_path):
    """The unmodified configs/paper.yaml: DVC lists no world/pretrain stage and no dependency on their outputs."""
    repo = make_repo(tmp_path / "repo", yaml.safe_load((REPO / "configs/paper.yaml").read_text()))
    names = re.findall(r"^(\S+)", sh(DVC + ["stage", "list"], repo), flags=re.M)
    kinds = {n.split("@")[0] for n in names}
    assert kinds == {"model", "code", "listing", "shard", "shard_target", "features", "features_target", "descriptions",
                     "descriptions_target", "prompts", "prompts_target", "run", "report"}
    assert len([n for n in names if n.startswith("run@")]) == 10
    dag = sh(DVC + ["dag", "--md"], repo)
    assert "tiny_clip" not in dag and "world" not in dag and "pretrain" not in dag


TEST_PER_CLASS = 6  # 30 base and 30 new test images: experiments' accuracies differ in fine steps


@pytest.fixture(scope="module")
def paper_repo(tmp_path_factory):
    """The adapted paper config in a fresh repo after its first `dvc repro`, committed (the repro's output is
    kept in `.first_repro`). Shared by the tests below: the remote and queue tests start from a repro'd repo."""
    tmp = tmp_path_factory.mktemp("paper")
    root = eurosat_root(tmp / "coop-data", test=TEST_PER_CLASS)
    checkpoint = random_checkpoint(tmp / "weights" / "vit.safetensors")
    repo = make_repo(tmp / "repo", _paper_params(root, checkpoint))
    first_repro = sh(DVC + ["repro"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "repro"], repo)
    return SimpleNamespace(path=repo, first_repro=first_repro, checkpoint=checkpoint)


@pytest.mark.slow  # the shared repro: about 2 minutes on a busy 2-core machine (8 stages, 4 import torch)
def test_paper_config_repro_runs_only_real_data_stages(paper_repo):
    repo, checkpoint = paper_repo.path, paper_repo.checkpoint
    ran = stages_run(paper_repo.first_repro)
    expected = ["model", "code", "listing", "shard@eurosat", "descriptions@eurosat", "features@eurosat",
                "prompts@eurosat", "run@zeroshot", "run@linear_probe", "report"]
    assert sorted(ran) == sorted(expected) and ran[-1] == "report"
    lock = lock_stages(repo)
    assert sorted(lock) == sorted(expected)
    deps = {d["path"] for stage in lock.values() for d in stage.get("deps", [])}
    assert not any("tiny_clip" in d or d.startswith("data/raw") for d in deps), deps
    assert not (repo / "data/raw").exists() and not (repo / "models/tiny_clip").exists()

    # the record names the checkpoint and its sha256 (hashed here independently); features depend on it
    record = json.loads((repo / "models/model.json").read_text())
    assert record == {"name": "promptlab-tiny", "pretrained": str(checkpoint), "kind": "file", "file": str(checkpoint),
                      "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()}
    assert {d["path"] for d in lock["features@eurosat"]["deps"]} >= {"models/model.json", "data/shards/eurosat"}

    summary = json.loads((repo / "metrics/summary.json").read_text())["base2new"]["eurosat"]
    counts = summary["zeroshot"]["counts"]["1"]
    assert counts["base"][1] == counts["new"][1] == 5 * TEST_PER_CLASS  # 5 classes x 6 test images
    assert summary["linear_probe"]["counts"]["1"]["base"][1] == 5 * TEST_PER_CLASS  # closed vocabulary: base
    assert stages_run(sh(DVC + ["repro"], repo)) == ["listing"]  # a second repro: only the data.root check


@pytest.mark.slow  # a clone and a pull: about 30 s after the shared repro
def test_remote_push_then_fresh_clone_pull_reruns_only_listing(paper_repo, tmp_path):
    """A local-directory DVC remote shares shards, features, prompt banks and runs: after `dvc push`, a fresh
    clone + `dvc pull` has every output and `dvc repro` re-runs nothing but `listing`."""
    paper_repo = paper_repo.path
    remote = tmp_path / "remote"
    sh(DVC + ["remote", "add", "-d", "team", str(remote)], paper_repo)
    sh(["git", "commit", "-qam", "remote"], paper_repo)
    sh(DVC + ["push"], paper_repo)
    assert any(remote.rglob("*"))
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(paper_repo), str(clone)], tmp_path)
    assert not (clone / "data/features").exists()
    sh(DVC + ["pull"], clone)
    for path in ("data/features/eurosat/train.safetensors", "data/prompts/eurosat/bank.safetensors",
                 "models/model.json"):
        assert (clone / path).read_bytes() == (paper_repo / path).read_bytes(), path
    assert stages_run(sh(DVC + ["repro"], clone)) == ["listing"]
    # a per-experiment device (-S model.device=cuda:1) is where stages run, not what they compute: only the
    # report, which prints the params, is out of date
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["model"]["device"] = "cuda:1"
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = sh(DVC + ["status"], clone)
    assert re.findall(r"^(\S+):", status, flags=re.M) == ["listing", "report"], status


def _experiments(show: list) -> dict[str, dict]:
    """{experiment name: its metrics/summary.json} from `dvc exp show --json`."""
    found = {}
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data") or {}
                summary = (data.get("metrics") or {}).get("metrics/summary.json", {}).get("data")
                if rev.get("name") and summary is not None:
                    found[rev["name"]] = summary
    return found


WORKERS = Path(".dvc/tmp/exps/celery")  # DVC's queue workers: dvc-exp-worker-<n>.json (pid, returncode) and .out


def _start_queue_workers(repo: Path) -> None:
    """`dvc queue start -j 2`, its output in a file beside the repo. Not a pipe: DVC forks each worker off this
    command, and the fork keeps the command's stdout/stderr open for as long as its worker lives, so reading a
    pipe to its end waits for the workers to exit. They exit on their own only when the shutdown that their idle
    monitor sends once (dvc_task's TemporaryWorker) gets through; one CI run hung here, silent, until CI killed
    it. Waiting on `dvc queue status` instead bounds the wait, and the workers are killed after."""
    log = repo.parent / "queue-start.log"
    with log.open("w") as out:
        proc = subprocess.run(DVC + ["queue", "start", "-j", "2"], cwd=repo, env=ENV, stdout=out,
                              stderr=subprocess.STDOUT, timeout=120)
    assert proc.returncode == 0, log.read_text()


def _worker_logs(repo: Path) -> str:
    return "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((repo / WORKERS).glob("*.out")))


def _kill_queue_workers(repo: Path) -> None:
    """Kill every queue worker still running, with the experiment it runs: DVC starts each in its own process
    group, and records its pid (returncode still null while it runs)."""
    for record in (repo / WORKERS).glob("dvc-exp-worker-*.json"):
        info = json.loads(record.read_text())
        if info.get("returncode") is not None:
            continue
        with contextlib.suppress(ProcessLookupError):
            group = os.getpgid(info["pid"])
            if group != os.getpgrp():  # never this test's own group
                os.killpg(group, signal.SIGKILL)


@pytest.mark.slow  # two experiments in parallel through DVC's queue: minutes on a busy 2-core machine
def test_two_queued_experiments_run_in_parallel_from_the_cache(paper_repo):
    """`dvc exp run --queue -S ...` twice, `dvc queue start -j 2`: both finish, both show in `dvc exp show`, and
    zero-shot's numbers are the baseline's in both (only run@linear_probe re-ran), and the two probes' numbers
    differ: C = 1e-4 shrinks the weights to nothing, C = 1e6 fits the class colours."""
    paper_repo = paper_repo.path
    for name, c in (("c-small", "0.0001"), ("c-large", "1000000")):  # plain numbers: DVC writes 1e-06 as text
        sh(DVC + ["exp", "run", "--queue", "-n", name, "-S", f"++linear_probe.c_grid=[{c}]",
                  "-S", "++linear_probe.search_steps=0"], paper_repo)
    try:
        _start_queue_workers(paper_repo)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = sh(DVC + ["queue", "status"], paper_repo, timeout=120)
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            time.sleep(5)
        succeeded = re.findall(r"^\S+\s+(c-small|c-large)\s.*Success", status, flags=re.M)
        assert len(succeeded) == 2, status + _worker_logs(paper_repo)
    finally:
        _kill_queue_workers(paper_repo)
    exps = _experiments(json.loads(sh(DVC + ["exp", "show", "--json"], paper_repo)))
    assert {"c-small", "c-large"} <= set(exps)
    rows = {n: exps[n]["base2new"]["eurosat"] for n in ("c-small", "c-large")}
    assert all(0 <= row["linear_probe"]["base"] <= 100 for row in rows.values())
    baseline = json.loads((paper_repo / "metrics/summary.json").read_text())["base2new"]["eurosat"]
    scalars = lambda row: {k: row[k] for k in ("base", "new", "hm")}  # noqa: E731 (exp show drops counts/seeds)
    assert scalars(rows["c-small"]["zeroshot"]) == scalars(rows["c-large"]["zeroshot"]) == scalars(baseline["zeroshot"])
    assert rows["c-small"]["linear_probe"]["base"] != rows["c-large"]["linear_probe"]["base"], rows  # base only
