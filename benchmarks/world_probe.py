"""Quick probe of a synthetic-world / tiny-CLIP setting without the pipeline: pretrain (or load a checkpoint),
render a small photo-domain eval set in memory, and print zero-shot vs linear probe vs CoOp (and optionally
KgCoOp) on all 48 classes at 1 / 4 / 16 shots, plus CoOp's base-to-new. For choosing world and pretraining
defaults; the reported numbers come from `dvc repro`.

    python benchmarks/world_probe.py pretrain.steps=200 pretrain.lr=5e-4 [--ckpt /tmp/a.safetensors]

Overrides are `section.key=value` (YAML values) for any params block (pretrain.steps=150, coop.lr=0.01);
`--set NAME=value` sets a module constant of promptlab.data.synthetic (e.g. ATTRIBUTE_CAPTION_RATE=0.5, or
CAPTION_TEMPLATES as a YAML mapping). Train features are `features.train_views` augmented views (the
features stage's transform), test features the plain image, as in the pipeline. The test images are the
world's own test split (same RNG keys), so zero-shot matches the pipeline's run@zeroshot exactly (checked on
the default world: all 26.30, base 49.65, new 51.22); the training and val shots are freshly rendered
photos (a seeded stream per --seed), not the world's train split.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from promptlab.clip.features import augmented_views, encode_images, train_transform
from promptlab.clip.model import LoadedCLIP, build_untrained
from promptlab.clip.pretrain import pretrain, save_checkpoint
from promptlab.config import load_params
from promptlab.data import synthetic
from promptlab.methods import method_class
from promptlab.methods.base import Batch, FrozenCLIP, TrainData
from promptlab.prompts.bank import ClassSet
from promptlab.train import train


def apply_overrides(p, overrides: list[str]):
    data = p.model_dump()
    for o in overrides:
        key, value = o.split("=", 1)
        section, name = key.split(".", 1)
        data[section][name] = yaml.safe_load(value)
    return type(p).model_validate(data)


def render_split(classes, split_index: int, per_class: int, seed: int, size: int,
                 shades: bool) -> tuple[list, torch.Tensor]:
    images = [synthetic.render(c, "photo", np.random.default_rng([seed, 0, split_index, c.label, i]), size,
                               synthetic.labelled_shade(c, shades))
              for c in classes for i in range(per_class)]
    return images, torch.arange(len(classes)).repeat_interleave(per_class)


@torch.no_grad()
def features(loaded: LoadedCLIP, images: list, views: int, scale_min: float) -> torch.Tensor:
    """[N, V, D] augmented views (views > 0) or [N, 1, D] plain."""
    if views == 0:
        x = torch.stack([loaded.preprocess(im) for im in images])
        return encode_images(loaded.model, x, patches=False)[0][:, None]
    tf = train_transform(loaded, scale_min)
    x = torch.stack([augmented_views(im, str(i), views, tf, 0) for i, im in enumerate(images)])  # [N, V, 3, H, W]
    n, v = x.shape[:2]
    return encode_images(loaded.model, x.flatten(0, 1), patches=False)[0].view(n, v, -1)


def class_set(clip: FrozenCLIP, names: list[str]) -> ClassSet:
    with torch.no_grad():
        hand = F.normalize(clip.text.encode_texts([f"a photo of a {n}." for n in names]), dim=-1)
    return ClassSet(names, "a photo of a {}.", hand)


def accuracy(method, feats: torch.Tensor, labels: torch.Tensor, classes: ClassSet) -> float:
    with torch.no_grad():
        logits = method.logits(Batch(F.normalize(feats[:, 0].float(), dim=-1), labels), classes)
    return round(100.0 * float((logits.argmax(-1) == labels).float().mean()), 2)


def fit(name: str, p, clip, classes, tr: TrainData, val: TrainData, seed: int, **over):
    cfg = getattr(p, name)
    cfg = cfg.model_validate({**cfg.model_dump(), **over})
    torch.manual_seed(seed)
    method = method_class(name)(cfg, clip, classes)
    if method.trainable:
        train(method, tr, classes, cfg, seed=seed, val=val)
    return method.eval()


def subsample(labels: torch.Tensor, shots: int, keep: list[int] | None = None) -> torch.Tensor:
    rows = [i for i, y in enumerate(labels.tolist()) if (keep is None or y in keep)]
    per: dict[int, int] = {}
    out = []
    for i in rows:
        y = int(labels[i])
        if per.get(y, 0) < shots:
            out.append(i)
            per[y] = per.get(y, 0) + 1
    return torch.tensor(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--ckpt", help="load this checkpoint if it exists, else pretrain and save it there")
    ap.add_argument("--shots", default="1,4,16")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--methods", default="coop,kgcoop")
    ap.add_argument("--coop-shots", default="16")
    ap.add_argument("--set", action="append", default=[], help="module constant of synthetic: NAME=value")
    args = ap.parse_args()
    for s in args.set:
        k, v = s.split("=", 1)
        setattr(synthetic, k, yaml.safe_load(v))
    p = apply_overrides(load_params(), args.overrides)
    size = p.world.image_size
    t0, c0 = time.perf_counter(), time.process_time()
    if args.ckpt and Path(args.ckpt).exists():
        model = build_untrained(p.pretrain.model, 0)
        from safetensors.torch import load_file
        model.load_state_dict(load_file(args.ckpt))
        model.eval()
    else:
        model = pretrain(p.pretrain.model, p.pretrain, size, log=lambda s: None, shades=p.world.class_shades)
        if args.ckpt:
            save_checkpoint(model, Path(args.ckpt))
    t_pre, c_pre = time.perf_counter() - t0, time.process_time() - c0
    model.requires_grad_(False)
    _, _, preprocess = open_clip.create_model_and_transforms(p.pretrain.model, pretrained=None)
    loaded = LoadedCLIP(model, preprocess, open_clip.get_tokenizer(p.pretrain.model), p.pretrain.model)
    clip = FrozenCLIP(loaded)
    classes = synthetic.world_classes()
    names = [c.name for c in classes]
    n = len(classes)
    seed_w = p.world.seed + 1000 * args.seed
    shades = p.world.class_shades
    tr_im, tr_y = render_split(classes, 0, 16, seed_w, size, shades)
    va_im, va_y = render_split(classes, 1, 4, seed_w, size, shades)
    te_im, te_y = render_split(classes, 2, 24, p.world.seed, size, shades)
    tr_x = features(loaded, tr_im, p.features.train_views, p.features.crop_scale_min)
    va_x = features(loaded, va_im, 0, 1.0)
    te_x = features(loaded, te_im, 0, 1.0)
    allc = class_set(clip, names)
    half = (n + 1) // 2
    base, new = list(range(half)), list(range(half, n))
    out = {"pretrain_s": round(t_pre, 1), "pretrain_cpu_s": round(c_pre, 1)}

    def sub(labels_in):
        m = torch.isin(te_y, torch.tensor(labels_in))
        remap = {l: i for i, l in enumerate(labels_in)}
        return te_x[m], torch.tensor([remap[int(y)] for y in te_y[m]]), class_set(clip, [names[i] for i in labels_in])

    zs = fit("zeroshot", p, clip, allc, None, None, 0)
    out["zs_all"] = accuracy(zs, te_x, te_y, allc)
    for nm, li in (("base", base), ("new", new)):
        x, y, cs = sub(li)
        out[f"zs_{nm}"] = accuracy(zs, x, y, cs)
    for k in [int(s) for s in args.shots.split(",")]:
        r = subsample(tr_y, k)
        rv = subsample(va_y, min(k, 4))
        tr = TrainData(tr_x[r], tr_y[r])
        va = TrainData(va_x[rv], va_y[rv])
        out[f"lp_all@{k}"] = accuracy(fit("linear_probe", p, clip, allc, tr, va, args.seed), te_x, te_y, allc)
        if "coop" in args.methods and str(k) in args.coop_shots.split(","):
            out[f"coop_all@{k}"] = accuracy(fit("coop", p, clip, allc, tr, va, args.seed), te_x, te_y, allc)
    # base-to-new at 16 shots
    r = subsample(tr_y, 16, base)
    bcs = class_set(clip, [names[i] for i in base])
    tr = TrainData(tr_x[r], tr_y[r])
    for m in [s for s in args.methods.split(",") if s]:
        method = fit(m, p, clip, bcs, tr, None, args.seed)
        for nm, li in (("base", base), ("new", new)):
            x, y, cs = sub(li)
            out[f"{m}_{nm}"] = accuracy(method, x, y, cs)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    print(" ".join(args.overrides + args.set), out, flush=True)


if __name__ == "__main__":
    main()
