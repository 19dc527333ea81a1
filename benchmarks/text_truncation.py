"""Benchmark 2: text encoder truncated to the longest real prompt (promptlab's TextEncoder) vs the full
77-token context (the CoOp code's TextEncoder, benchmarks/reference.py), for a CoOp training step.

ViT-B-16's text tower (random weights), 100 ImageNet class names (every 10th of open_clip's list, with the
class of ImageNet's longest CoOp prompt swapped in, so the truncated length is ImageNet's own: 18 tokens),
CoOp with ctx "a photo of a", a batch of 32 cached image features. A step = the 100 prompts through the text
encoder, the loss, backward to the context, the SGD step. Also reports the class features and the context
gradient of both paths and their largest differences.

    uv run python benchmarks/text_truncation.py [--model ViT-B-16] [--classes 100] [--steps 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import _common as C
from reference import FullContextTextEncoder

from promptlab.methods.base import Batch, FrozenCLIP
from promptlab.methods.coop.method import CoOp


def class_names(tokenizer, n: int) -> list[str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    names = list(IMAGENET_CLASSNAMES)
    lengths = tokenizer([f"a photo of a {c}." for c in names]).argmax(dim=-1)
    longest = names[int(lengths.argmax())]
    picked = names[:: max(1, len(names) // n)][:n]
    if longest not in picked:
        picked[-1] = longest
    return picked


def timed_steps(method: CoOp, batch: Batch, classes, steps: int) -> list[float]:
    opt = torch.optim.SGD([method.ctx], lr=0.002, momentum=0.9)
    times = []
    for i in range(steps + 1):  # the first step is an untimed warm-up
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        method.backward(batch, classes)
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per path (after one warm-up step)")
    args = ap.parse_args()
    result = C.Result("text_truncation")
    result["goal"] = ">= 2x faster CoOp step (forward + backward), ViT-B-16 text tower, 100 classes"
    clip = C.random_clip(args.model)
    names = class_names(clip.tokenizer, args.classes)
    classes = C.class_set_for(names)
    truncated = FrozenCLIP(clip)
    full = FrozenCLIP(clip)
    full.text = FullContextTextEncoder(clip.model, clip.tokenizer)
    gen = torch.Generator().manual_seed(0)
    batch = Batch(F.normalize(torch.randn(args.batch, truncated.embed_dim, generator=gen), dim=-1),
                  torch.randint(len(names), (args.batch,), generator=gen))

    def method(frozen: FrozenCLIP) -> CoOp:
        torch.manual_seed(0)
        return CoOp(CoOp.Config(), frozen, classes)

    # equality: class features and the context gradient of one step, same context
    check = {}
    for label, frozen in (("truncated", truncated), ("full", full)):
        m = method(frozen)
        loss, _ = m.backward(batch, classes)
        with torch.no_grad():
            check[label] = (m.text_features(classes), m.ctx.grad.clone(), float(loss))
    eot = truncated.text.tokenize([f"a photo of a {c}." for c in names]).argmax(dim=-1)
    feat_diff = float((check["truncated"][0] - check["full"][0]).abs().max())
    grad_diff = float((check["truncated"][1] - check["full"][1]).abs().max())
    grad_scale = float(check["full"][1].abs().max())

    times = {label: timed_steps(method(frozen), batch, classes, args.steps)
             for label, frozen in (("truncated", truncated), ("full", full))}
    t_trunc, t_full = C.median(times["truncated"]), C.median(times["full"])
    result["model"] = args.model
    result["classes"] = len(names)
    result["batch"] = args.batch
    result["context_length"] = int(clip.model.context_length)
    result["truncated_length"] = int(eot.max()) + 1
    result["mean_prompt_length"] = round(float(eot.float().mean()) + 1, 2)
    result["step_s"] = {"truncated": round(t_trunc, 3), "full": round(t_full, 3),
                        "truncated_all": [round(t, 3) for t in times["truncated"]],
                        "full_all": [round(t, 3) for t in times["full"]]}
    result["ratio"] = round(t_full / t_trunc, 2)
    result["equality"] = {"features_max_abs_diff": feat_diff, "features_tolerance": 1e-4,
                          "ctx_grad_max_abs_diff": grad_diff, "ctx_grad_max_abs": grad_scale,
                          "loss": [check["truncated"][2], check["full"][2]],
                          "equal": feat_diff <= 1e-4 and grad_diff <= 1e-4 * max(grad_scale, 1e-12) + 1e-7}
    result["goal_met"] = result["ratio"] >= 2 and result["equality"]["equal"]
    result.write()


if __name__ == "__main__":
    main()
