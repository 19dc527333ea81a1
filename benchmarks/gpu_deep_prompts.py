"""GPU: MaPLe and PromptSRC training on ViT-B/16 (random weights), bf16 autocast with fp32 master prompts,
batch 4 and 32: images/s and peak GPU memory, through the project's own training step (PromptMethod.backward
+ SGD). Prepared to finish well under 8 minutes on one recent GPU (2 methods x 2 batch sizes x (3 warm-up +
20 timed steps), plus the same with activation checkpointing at batch 32).

    python benchmarks/gpu_deep_prompts.py [--steps 20] [--classes 100]

Writes benchmarks/results/gpu_deep_prompts.json. Needs CUDA; exits with one line otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import torch  # noqa: E402


def measure(method: str, batch_size: int, steps: int, n_classes: int, checkpointing: bool) -> dict:
    from promptlab.methods import method_class
    from promptlab.methods.base import Batch, FrozenCLIP
    from promptlab.prompts.bank import ClassSet

    loaded = _common.random_clip("ViT-B-16-quickgelu", seed=0)
    loaded.model.cuda()
    clip = FrozenCLIP(loaded)
    classes = ClassSet([f"class {i}" for i in range(n_classes)], "a photo of a {}.",
                       torch.zeros(n_classes, 1, device="cuda"))
    cls = method_class(method)
    torch.manual_seed(0)
    m = cls(cls.Config(checkpointing=checkpointing), clip, classes).cuda()
    opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator(device="cuda").manual_seed(1)
    batch = Batch(None, torch.randint(n_classes, (batch_size,), device="cuda", generator=gen),
                  images=torch.randn(batch_size, 3, 224, 224, device="cuda", generator=gen))
    m.train()

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss, _ = m.backward(batch, classes)  # bf16 autocast inside the method on CUDA; fp32 loss
        opt.step()
        return loss

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    out = {"method": method, "batch": batch_size, "checkpointing": checkpointing, "step_s": round(dt, 4),
           "images_per_s": round(batch_size / dt, 1),
           "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1), "loss_dtype": str(loss.dtype)}
    del m, opt, clip, loaded
    torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--classes", type=int, default=100)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_deep_prompts: no CUDA device")
    res = _common.Result("gpu_deep_prompts")
    res["setup"] = {"model": "ViT-B-16-quickgelu (random weights)", "precision": "bf16 autocast, fp32 prompts",
                    "classes": args.classes, "steps": args.steps, "gpu": torch.cuda.get_device_name()}
    runs = []
    for method in ("maple", "promptsrc"):
        for batch_size, ckpt in ((4, False), (32, False), (32, True)):
            runs.append(measure(method, batch_size, args.steps, args.classes, ckpt))
            print(runs[-1], flush=True)
    res["runs"] = runs
    res.data["machine_device"] = "cuda"
    res.write()


if __name__ == "__main__":
    main()
