"""MaPLe and PromptSRC training step on ViT-B/16 (random weights), batch 4, CPU fp32: images/s and peak memory,
ours against the official trainer's forward + backward + SGD step on the same weights, prompts and inputs.

The official code is not part of this project: `--official` names a command (run outside the project, e.g.
a checkout of the official repos with Dassl stubbed) that takes `METHOD INIT STEPS N_CLASSES`, loads the prompt
values this script wrote to INIT (safetensors, our names) and prints one JSON line {step_s, losses,
peak_rss_mib, rss_after_load_mib}. Each side runs in its own process (peak RSS is per process), alternating
ours / official for `--rounds` rounds; medians are reported. Equal loss: the first step's losses must agree.

    python benchmarks/deep_prompts.py --official "python /path/to/bench_official.py" [--steps 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import torch  # noqa: E402

CONFIGS = {"maple": {}, "promptsrc": {}}  # the papers' settings (Config defaults: depth 9, 2 / 4+4 tokens)


def ours(method: str, init: Path, steps: int, n_classes: int) -> dict:
    """One process: build, write the initial prompts to `init`, time `steps` training steps after a warm-up."""
    from safetensors.torch import save_file

    from promptlab.methods import method_class
    from promptlab.methods.base import Batch, FrozenCLIP
    from promptlab.prompts.bank import ClassSet

    loaded = _common.random_clip("ViT-B-16-quickgelu", seed=0)
    clip = FrozenCLIP(loaded)
    names = [f"class {i}" for i in range(n_classes)]
    classes = ClassSet(names, "a photo of a {}.", torch.zeros(n_classes, 1))
    cls = method_class(method)
    torch.manual_seed(0)
    m = cls(cls.Config(**CONFIGS[method]), clip, classes)
    save_file({k: v.contiguous() for k, v in m.learned_state().items()}, str(init))
    opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 224, 224, generator=gen)
    labels = torch.randint(n_classes, (4,), generator=gen)
    batch = Batch(None, labels, images=images)
    m.train()
    rss_after_load = _common.peak_rss_mib()
    times, losses = [], []
    for _ in range(steps + 1):  # the first step warms up (not timed)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = m.backward(batch, classes)
        opt.step()
        times.append(time.perf_counter() - t)
        losses.append(float(loss))
    return {"side": "ours", "method": method, "step_s": times[1:], "losses": losses,
            "peak_rss_mib": _common.peak_rss_mib(), "rss_after_load_mib": rss_after_load}


def stage_cost(methods: list[str], threads: int) -> dict:
    """What run@<method> costs on the default synthetic world, from its parts measured on real shards (48
    classes, 16 shots, 24 test images per class, 32 px; the tiny CLIP's shape, random weights: cost does not
    depend on them) with params.yaml's settings. Per seed: base2new trains on 24 classes (384 images), the
    shared all-class training on 48 (768), each for `epochs`; scoring reads 4 x 1152 test images (base2new,
    the source and its two domains) + 288 (the shapes dataset). CPU seconds are reported beside wall seconds:
    on a shared machine they are the figure that does not depend on the neighbours."""
    from promptlab.clip.model import LoadedCLIP
    from promptlab.config import load_params
    from promptlab.data.pixels import PixelOptions, PixelSource, pixel_test_split
    from promptlab.evaluate import score_batches
    from promptlab.methods import method_class
    from promptlab.methods.base import FrozenCLIP
    from promptlab.prompts.bank import build_class_set
    from promptlab.train import train

    import open_clip

    torch.set_num_threads(threads)
    params = load_params(_common.REPO / "params.yaml")
    loaded = _common.random_clip("promptlab-tiny", seed=0)
    clip = FrozenCLIP(loaded)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        train_samples, names = _common.synthetic_samples(48, 16, 32, "train")
        test_samples, _ = _common.synthetic_samples(48, 24, 32, "test", seed=1)
        _common.write_shards(Path(tmp), "train", train_samples)
        _common.write_shards(Path(tmp), "test", test_samples)
        with torch.no_grad():
            classes = build_class_set(clip.text, names, "a photo of a {}.", ensembles=())
        options = PixelOptions(params.features.crop_scale_min, 0)
        for method in methods:
            cfg = getattr(params, method)
            row = {}
            for label, n_classes in (("train_base2new", 24), ("train_all", 48)):
                keep = [k for k, _, lab in train_samples if lab < n_classes]
                labels = [lab for _, _, lab in train_samples if lab < n_classes]
                sub = classes.subset(list(range(n_classes)))
                source = PixelSource(loaded, Path(tmp), keep, labels, cfg.batch_size, 1, options)
                torch.manual_seed(1)
                m = method_class(method)(cfg, clip, sub)
                wall, cpu = time.perf_counter(), time.process_time()
                train(m, None, sub, cfg, seed=1, source=source)
                row[label] = {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2)}
            wall, cpu = time.perf_counter(), time.process_time()
            score_batches(m, pixel_test_split(loaded, Path(tmp), None, options), classes)
            row["score_1152"] = {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2)}
            for unit in ("wall_s", "cpu_s"):
                per_seed = (row["train_base2new"][unit] + row["train_all"][unit]
                            + row["score_1152"][unit] * (4 + 288 / 1152))
                row[f"stage_estimate_{unit}"] = round(3 * per_seed, 1)  # 3 seeds
            out[method] = row
            print(method, row, flush=True)
    return out


def _run(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=_common.REPO)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", help="command measuring the official trainer (see the docstring)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--methods", default="maple,promptsrc")
    ap.add_argument("--side", help=argparse.SUPPRESS)  # internal: one measurement in this process
    ap.add_argument("--init", help=argparse.SUPPRESS)
    ap.add_argument("--stage-cost", action="store_true", help="estimate run@<method> on the default world")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.stage_cost:
        res = _common.Result("deep_prompts_stage_cost")
        res["threads"] = args.threads
        res["methods"] = stage_cost(args.methods.split(","), args.threads)
        res.write()
        return
    if args.side == "ours":
        print(json.dumps(ours(args.methods, Path(args.init), args.steps, args.classes)))
        return
    res = _common.Result("deep_prompts")
    res["setup"] = {"model": "ViT-B-16-quickgelu (random weights)", "batch": 4, "classes": args.classes,
                    "steps": args.steps, "rounds": args.rounds, "precision": "fp32", "device": "cpu",
                    "step": "forward + backward + SGD step (PromptSRC: + frozen image pass and its 3 terms)"}
    for method in args.methods.split(","):
        runs = {"ours": [], "official": []}
        with tempfile.TemporaryDirectory() as tmp:
            init = Path(tmp) / "init.safetensors"
            for _ in range(args.rounds):
                runs["ours"].append(_run([sys.executable, __file__, "--side", "ours", "--methods", method,
                                          "--init", str(init), "--steps", str(args.steps),
                                          "--classes", str(args.classes)]))
                if args.official:
                    runs["official"].append(_run(shlex.split(args.official) + [method, str(init), str(args.steps),
                                                                               str(args.classes)]))
        res[method] = summarise(runs)
    res.write()


def summarise(runs: dict) -> dict:
    out = {}
    for side, rs in runs.items():
        if not rs:
            continue
        step = _common.median([t for r in rs for t in r["step_s"]])
        out[side] = {"images_per_s": round(4 / step, 3), "step_s": round(step, 3),
                     "peak_rss_mib": round(max(r["peak_rss_mib"] for r in rs), 1),
                     "rss_after_load_mib": round(max(r["rss_after_load_mib"] for r in rs), 1),
                     "first_loss": rs[0]["losses"][0]}
    if "official" in out:
        out["speed_ratio_ours_over_official"] = round(out["ours"]["images_per_s"] / out["official"]["images_per_s"], 3)
        out["peak_memory_ratio_ours_over_official"] = round(out["ours"]["peak_rss_mib"] / out["official"]["peak_rss_mib"], 3)
        out["first_loss_abs_diff"] = abs(out["ours"]["first_loss"] - out["official"]["first_loss"])
    return out


if __name__ == "__main__":
    main()
