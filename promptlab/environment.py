"""The machine a result was computed on, recorded beside the numbers (metrics/runs/…, metrics/summary.json).

Same params on the same machine give byte-identical outputs; on another machine they need not: torch picks CPU
kernels by the instruction set it finds (ATen's AVX2/AVX512 kernels, MKL's and oneDNN's own dispatch) and
splits reductions over its threads, and each choice sums in another order. Measured on our AMD EPYC
(benchmarks/cpu_determinism.py): forcing another ISA (ATEN_CPU_CAPABILITY=avx2 or default) or another thread
count changes the tiny CLIP's pretrained weights and every feature after it. So a result records the facts that
decide its floating point: the CPU and the vector ISA torch uses, library versions, thread counts, the device
and any dispatch override in the environment; `dvc metrics diff` then shows when two results come from
different hardware, and `fingerprint` is a short hash of those facts (equal fingerprints: bit-comparable).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

# environment variables that change which kernels run or how many threads split a reduction
DISPATCH_VARS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA",
                 "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")


def cpuinfo(field: str) -> str | None:
    """A field of the first CPU in /proc/cpuinfo (Linux), e.g. "model name", "vendor_id"; None elsewhere."""
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text(errors="replace").splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    return None


def environment(device: str = "cpu") -> dict:
    """Flat {name: str | int} (dvc metrics diff shows a changed string as old -> new); see the module doc."""
    import numpy
    import open_clip
    import torch

    env = {"cpu": cpuinfo("model name") or platform.processor() or platform.machine(),
           "cpu_vendor": cpuinfo("vendor_id") or "", "cpu_count": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "machine": platform.machine(), "os": platform.system(), "python": platform.python_version(),
           "torch": torch.__version__, "open_clip": open_clip.__version__, "numpy": numpy.__version__,
           "torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
           "device": device}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        index = torch.device(device).index or 0
        env.update(gpu=torch.cuda.get_device_name(index), cuda=str(torch.version.cuda),
                   cudnn=str(torch.backends.cudnn.version()))
    env.update({f"env_{k}": os.environ[k] for k in DISPATCH_VARS if k in os.environ})
    env["fingerprint"] = fingerprint(env)
    return env


def fingerprint(env: dict) -> str:
    """12 hex digits of every fact but the fingerprint itself: equal values, the same floating point."""
    facts = {k: v for k, v in env.items() if k != "fingerprint"}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]
