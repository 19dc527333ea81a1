"""The machine fingerprint recorded with results (promptlab/environment.py) and how the report shows it:
summary.json's "environment" key (what `dvc metrics diff` compares) and the results page's Environment section,
which warns when the runs come from more than one machine."""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
from pathlib import Path

import numpy
import open_clip
import torch

from promptlab.environment import environment, fingerprint
from promptlab.io import write_json
from promptlab.report import environment_markdown, environment_summary

REPO = Path(__file__).resolve().parents[1]


def test_environment_records_what_decides_the_floating_point(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # only recorded here: torch read it at import
    env = environment("cpu")
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["cpu_capability"]
    assert (env["torch"], env["open_clip"], env["numpy"]) == (torch.__version__, open_clip.__version__,
                                                              numpy.__version__)
    assert (env["torch_threads"], env["interop_threads"], env["device"]) == (
        torch.get_num_threads(), torch.get_num_interop_threads(), "cpu")
    assert env["env_ATEN_CPU_CAPABILITY"] == "avx2" and env["cpu"]
    facts = {k: v for k, v in env.items() if k != "fingerprint"}
    assert env["fingerprint"] == hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]
    assert json.loads(json.dumps(env)) == env  # plain JSON values


def test_the_fingerprint_changes_with_the_thread_count():
    threads = torch.get_num_threads()
    try:
        one = environment()
        torch.set_num_threads(threads + 1)
        other = environment()
    finally:
        torch.set_num_threads(threads)
    assert other["torch_threads"] == threads + 1 and one["fingerprint"] != other["fingerprint"]
    assert fingerprint({**one, "fingerprint": "x"}) == one["fingerprint"]


AMD = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "torch": "2.5.0", "torch_threads": 2, "fingerprint": "aaa"}
INTEL = {**AMD, "cpu": "Intel(R) Xeon(R)", "cpu_capability": "AVX2", "fingerprint": "bbb"}


def _runs(env_coop: dict | None, env_zeroshot: dict | None) -> list[dict]:
    acc = {"correct": 1, "total": 2, "acc": 50.0}
    runs = []
    for method, env in (("coop", env_coop), ("zeroshot", env_zeroshot)):
        for seed in (1, 2):
            run = {"protocol": "base2new", "dataset": "synthetic", "method": method, "seed": seed, "base": acc,
                   "new": acc}
            runs.append({**run, "environment": env} if env else run)
    return runs


def test_summary_keeps_agreeing_facts_and_joins_differing_ones():
    assert environment_summary(_runs(AMD, AMD)) == {**AMD, "machines": 1, "recorded": 4}
    mixed = environment_summary(_runs(AMD, INTEL))
    assert mixed == {"cpu": "AMD EPYC | Intel(R) Xeon(R)", "cpu_capability": "AVX2 | AVX512", "torch": "2.5.0",
                     "torch_threads": 2, "fingerprint": "aaa | bbb", "machines": 2, "recorded": 4}
    assert environment_summary(_runs(None, None)) == {}


def test_the_page_warns_when_results_mix_machines():
    runs = _runs(AMD, INTEL)
    page = environment_markdown(environment_summary(runs), runs)
    assert "**These results mix 2 machines**: `aaa`: coop; `bbb`: zeroshot." in page
    assert "| cpu | AMD EPYC \\| Intel(R) Xeon(R) |" in page  # escaped: one table cell
    same = environment_markdown(environment_summary(_runs(AMD, AMD)), _runs(AMD, AMD))
    assert "mix" not in same and "| cpu | AMD EPYC |" in same and "| fingerprint | aaa |" in same
    partly = _runs(AMD, None)
    assert "2 of 4 runs carry no environment." in environment_markdown(environment_summary(partly), partly)
    assert "Not recorded" in environment_markdown({}, _runs(None, None))


def test_report_stage_writes_the_environment_beside_the_protocol_keys(tmp_path, monkeypatch):
    for r in _runs(AMD, INTEL):
        write_json(tmp_path / "runs" / r["method"] / f"seed{r['seed']}.json", r)
    (tmp_path / "curves").mkdir()
    main = runpy.run_path(str(REPO / "stages/report.py"))["main"]
    monkeypatch.chdir(REPO)  # the stage validates the repository's params.yaml
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["report.py", "--runs", str(tmp_path / "runs"), "--curves",
                                      str(tmp_path / "curves"), "--summary", str(out / "summary.json"),
                                      "--tables", str(out / "tables"), "--plots", str(out / "plots"),
                                      "--figures", str(out / "figures"), "--page", str(out / "report.md")])
    main()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"base2new", "domain_shift", "cross_dataset", "few_shot", "environment"}
    assert summary["environment"]["cpu"] == "AMD EPYC | Intel(R) Xeon(R)" and summary["environment"]["machines"] == 2
    page = (out / "report.md").read_text()
    assert "## Environment" in page and "**These results mix 2 machines**" in page
