"""The embedded synthetic world (docs/architecture.md "Raw data"): compositional colour × shape classes,
rendered on the CPU.

It is the default dataset (written in CoOp's folder format, so the real adapter reads it), the source of
shifted test-only domains for the domain-shift protocol, and the stream of captioned images the tiny CLIP is
pretrained on. Everything is a pure function of seeds: every image has its own RNG keyed by what it is, so
output never depends on iteration order, and two runs write byte-identical files.

Reading order: the vocabulary (colours, shapes, domains), the classes, rendering, descriptions, the dataset
writer, then the pretraining stream.
"""

from __future__ import annotations

import colorsys
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# ---------------------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------------------

# Canonical RGB per colour. Hues are spread round the wheel (closest pair ~27°: red/orange, orange/yellow) so a
# colour stays identifiable under the ±4° hue jitter applied when rendering; pink also differs from red in
# saturation, purple from blue in hue by ~50°.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),  # hue 0°
    "orange": (245, 120, 20),  # 27°
    "yellow": (240, 225, 30),  # 56°
    "green": (40, 180, 50),  # 124°
    "cyan": (30, 200, 210),  # 183°
    "blue": (40, 80, 230),  # 227°
    "purple": (140, 50, 200),  # 276°
    "pink": (250, 110, 180),  # 330°
}
COLOURS: tuple[str, ...] = tuple(COLOUR_RGB)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "hexagon")
DOMAINS: tuple[str, ...] = ("photo", "sketch", "noise")
SPLITS: tuple[str, ...] = ("train", "val", "test")

# ---------------------------------------------------------------------------------------------------------------
# Classes
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticClass:
    label: int
    colour: str
    shape: str

    @property
    def name(self) -> str:
        """The class name as prompts and split files spell it: "red circle"."""
        return f"{self.colour} {self.shape}"

    @property
    def folder(self) -> str:
        """The image folder name: "red_circle"."""
        return f"{self.colour}_{self.shape}"


@cache
def _classes() -> tuple[SyntheticClass, ...]:
    # CoOp's base/new split takes the first half of the labels as base. Ordering by the parity of
    # (colour index + shape index) makes that split a checkerboard over the colour × shape grid: every colour
    # and every shape is seen in base, and the new classes are unseen *compositions* of seen attributes.
    pairs = [(i, j) for i in range(len(COLOURS)) for j in range(len(SHAPES))]
    ordered = [p for p in pairs if sum(p) % 2 == 0] + [p for p in pairs if sum(p) % 2 == 1]
    return tuple(SyntheticClass(label, COLOURS[i], SHAPES[j]) for label, (i, j) in enumerate(ordered))


def world_classes() -> list[SyntheticClass]:
    """The 48 classes, indexed by label (base = labels 0-23, new = 24-47)."""
    return list(_classes())


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------

SHAPE_RADIUS = (0.25, 0.42)  # circumradius as a fraction of the image side (0.2-0.4: zero-shot 12 points lower)
SUPERSAMPLE = 4  # shapes are drawn at 4x and box-reduced: exact area coverage, i.e. clean anti-aliased edges
HUE_JITTER = 0.012  # ±4.3°, well inside half the smallest gap between palette hues


def _regular_polygon(n: int, phase: float = math.pi / 2) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular_polygon(2 * points)
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return outer * radii[:, None]


def _cross(half_width: float = 0.33) -> np.ndarray:
    w = half_width
    arm = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w), (-1, -w), (-1, w), (-w, w), (-w, 1)]
    return np.array(arm, dtype=float)


def _unit(points: np.ndarray) -> np.ndarray:
    """Scale so the farthest vertex is at radius 1: every shape then fits the same circle whatever its rotation."""
    return points / np.linalg.norm(points, axis=1).max()


# Unit outlines (circumradius 1), drawn as polygons so fill, outline, rotation and scale share one code path.
_OUTLINES: dict[str, np.ndarray] = {
    "circle": _unit(_regular_polygon(48)),
    "square": _unit(_regular_polygon(4, phase=math.pi / 4)),
    "triangle": _unit(_regular_polygon(3)),
    "star": _unit(_star()),
    "cross": _unit(_cross()),
    "hexagon": _unit(_regular_polygon(6)),
}


# Fine-grained shades of the labelled datasets. Within each colour the six shapes' classes are drawn in six
# distinct shades: a hue offset (well inside half the gap to the next palette hue, so the colour word stays
# right) times a brightness level. Pretraining images span the same shades whatever their class and no caption
# names one, so zero-shot prompts ("a photo of a red circle.") cannot use the shade, while image features
# resolve it: like a fine-grained dataset whose class names the web rarely distinguishes, the labelled data
# carry class information the text side does not know and that few-shot training can pick up.
SHADE_HUE_OFFSETS: tuple[float, ...] = (-0.02, 0.0, 0.02)  # fractions of the hue circle: -7.2°, 0°, +7.2°
SHADE_VALUES: tuple[float, ...] = (0.6, 1.0)  # brightness multipliers, each then jittered x U(0.85, 1)


@dataclass(frozen=True)
class Shade:
    hue_offset: float
    value: float


_SHADES = tuple(Shade(h, v) for v in SHADE_VALUES for h in SHADE_HUE_OFFSETS)


@cache
def class_shade(colour: str, shape: str) -> Shade:
    """The shade every labelled image of (colour, shape) is drawn in. A fixed permutation per colour (keyed by
    the colour, not the world seed) maps the six shapes to the six shades, so a shade says nothing about the
    shape across colours: what a prompt learns about the shades of base classes does not carry to new ones."""
    order = np.random.default_rng([20260, COLOURS.index(colour)]).permutation(len(_SHADES))  # one shade per shape
    return _SHADES[int(order[SHAPES.index(shape)])]


def labelled_shade(cls: SyntheticClass, class_shades: bool = True) -> Shade | None:
    """The shade a labelled image of `cls` is drawn in: its class shade, or None (the plain palette colour,
    `world.class_shades: false`: the world before shades, where few-shot training had nothing to add)."""
    return class_shade(cls.colour, cls.shape) if class_shades else None


def render(cls: SyntheticClass, domain: str, rng: np.random.Generator, size: int = 32,
           shade: Shade | None = None) -> Image.Image:
    """One RGB image of `cls` in `domain`, size x size; all randomness comes from `rng`. `shade`: the labelled
    datasets' class shade (None: the plain palette colour)."""
    return Image.fromarray(_render_array(cls, domain, rng, size, shade), mode="RGB")


def _render_array(cls: SyntheticClass, domain: str, rng: np.random.Generator, size: int,
                  shade: Shade | None = None) -> np.ndarray:
    """`render` as a uint8 [size, size, 3] array (the pretraining stream stacks these without a PIL round trip).

    The noise domain draws exactly what photo draws first, so one seed gives the same scene clean and corrupted."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown synthetic domain {domain!r} (known: {', '.join(DOMAINS)})")
    if domain == "sketch":
        background = _paper(rng, size)
        alpha = _shape_mask(cls.shape, rng, size, stroke=_stroke_width(rng, size))
    else:
        background = _textured_background(rng, size)
        alpha = _shape_mask(cls.shape, rng, size, stroke=None)
    colour = _jittered_colour(cls.colour, rng, shade)
    image = background * (1 - alpha[..., None]) + colour * alpha[..., None]
    image = image + rng.normal(0.0, 0.02, image.shape)  # mild sensor/paper grain over shape and background
    if domain == "noise":
        image = _corrupt(image, rng)
    return _to_uint8(image)


def _textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-saturation grey with a slight tint and a smooth linear gradient, in [0, 1] (the grain comes later).

    Low saturation keeps the shape's colour the only strongly chromatic thing in the image."""
    base = rng.uniform(0.25, 0.75) + rng.normal(0.0, 0.03, 3)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(-0.5, 0.5, size)
    gradient = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
    return base + rng.uniform(0.0, 0.3) * gradient[..., None]


def _paper(rng: np.random.Generator, size: int) -> np.ndarray:
    """Flat near-white paper with a faint warm or cool cast (the grain comes later)."""
    base = rng.uniform(0.9, 1.0) + rng.normal(0.0, 0.01, 3)
    return np.broadcast_to(base, (size, size, 3))


def _stroke_width(rng: np.random.Generator, size: int) -> int:
    """Outline width in supersampled pixels: about size/16 final pixels (2 px at 32 px), never below 1."""
    return max(SUPERSAMPLE, round(SUPERSAMPLE * size / 16 * rng.uniform(0.8, 1.2)))


def _shape_mask(shape: str, rng: np.random.Generator, size: int, stroke: int | None) -> np.ndarray:
    """Coverage in [0, 1] of the shape (filled, or outlined with `stroke`) at a random pose.

    The diameter is 50-84% of the image (SHAPE_RADIUS); the centre is drawn so the whole circumcircle stays inside."""
    canvas = size * SUPERSAMPLE
    radius = rng.uniform(*SHAPE_RADIUS) * canvas
    margin = radius + (stroke or 0) / 2
    centre = rng.uniform(margin, canvas - margin, 2)
    angle = rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = [tuple(p) for p in (_OUTLINES[shape] @ rotation.T) * radius + centre]
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    if stroke is None:
        draw.polygon(points, fill=255)
    else:
        # Closing the loop one vertex past the start gives the first corner a proper (rounded) joint too.
        draw.line(points + points[:2], fill=255, width=stroke, joint="curve")
    return np.asarray(mask.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0


def _jittered_colour(colour: str, rng: np.random.Generator, shade: Shade | None = None) -> np.ndarray:
    """The class colour (moved to `shade` if given) with a small hue shift and some loss of saturation and
    brightness, as RGB in [0, 1]."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in COLOUR_RGB[colour]))
    if shade is None:
        h, v = h + rng.uniform(-HUE_JITTER, HUE_JITTER), v * rng.uniform(0.8, 1.0)
    else:
        h = h + shade.hue_offset + rng.uniform(-HUE_JITTER, HUE_JITTER)
        v = v * shade.value * rng.uniform(0.85, 1.0)
    h = h % 1.0
    s = s * rng.uniform(0.85, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def _corrupt(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The noise domain: a Gaussian blur, then heavy per-pixel Gaussian noise. Blurring first keeps the noise
    at full strength; the shape stays recognisable because its colour is averaged over many pixels."""
    size = image.shape[0]
    radius = rng.uniform(0.6, 1.2) * size / 32
    blurred = Image.fromarray(_to_uint8(image), mode="RGB").filter(ImageFilter.GaussianBlur(radius))
    sigma = rng.uniform(0.12, 0.2)
    return np.asarray(blurred, dtype=np.float64) / 255.0 + rng.normal(0.0, sigma, image.shape)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Descriptions (CuPL-style class descriptions)
# ---------------------------------------------------------------------------------------------------------------

_SHAPE_FACTS: dict[str, dict[str, str]] = {
    "circle": {
        "kind": "round shape",
        "corners": "no corners at all",
        "sides": "one smooth curved edge and no straight sides",
        "outline": "a smooth, unbroken curve",
        "looks": "a coin or a full moon",
        "feature": "perfectly round outline",
    },
    "square": {
        "kind": "four-sided shape",
        "corners": "four right-angled corners",
        "sides": "four straight sides of equal length",
        "outline": "made of four straight lines meeting at right angles",
        "looks": "a floor tile or a box seen from above",
        "feature": "equal sides and square corners",
    },
    "triangle": {
        "kind": "three-sided shape",
        "corners": "three sharp corners",
        "sides": "three straight sides",
        "outline": "three straight lines that meet in pointed tips",
        "looks": "a slice of pizza or a warning sign",
        "feature": "three pointed tips",
    },
    "star": {
        "kind": "spiky shape",
        "corners": "five sharp points",
        "sides": "ten straight edges that zigzag in and out",
        "outline": "spiky, with five tips around a centre",
        "looks": "a star in the night sky",
        "feature": "five spiky points",
    },
    "cross": {
        "kind": "plus-shaped figure",
        "corners": "twelve right-angled corners",
        "sides": "twelve short straight edges",
        "outline": "two thick bars crossing at right angles",
        "looks": "a plus sign or a first-aid symbol",
        "feature": "four equal arms",
    },
    "hexagon": {
        "kind": "six-sided shape",
        "corners": "six blunt corners",
        "sides": "six straight sides of equal length",
        "outline": "six straight lines meeting at wide angles",
        "looks": "a honeycomb cell or a metal nut",
        "feature": "six equal sides",
    },
}

_COLOUR_FACTS: dict[str, dict[str, str]] = {
    "red": {"adj": "bright red", "like": "a ripe tomato or a fire truck", "temp": "warm"},
    "orange": {"adj": "vivid orange", "like": "an orange fruit or a pumpkin", "temp": "warm"},
    "yellow": {"adj": "sunny yellow", "like": "a lemon or a banana", "temp": "warm"},
    "green": {"adj": "fresh green", "like": "grass or a leaf", "temp": "cool"},
    "cyan": {"adj": "light blue-green cyan", "like": "a tropical sea or a swimming pool", "temp": "cool"},
    "blue": {"adj": "deep blue", "like": "a clear sky or the open ocean", "temp": "cool"},
    "purple": {"adj": "rich purple", "like": "a grape or a violet flower", "temp": "cool"},
    "pink": {"adj": "soft pink", "like": "candy floss or a flamingo", "temp": "warm"},
}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def describe(cls: SyntheticClass) -> list[str]:
    """11 deterministic description sentences, each naming the class, mixing shape and colour facts."""
    shape, colour, name = _SHAPE_FACTS[cls.shape], _COLOUR_FACTS[cls.colour], cls.name
    a = _article(name)
    the_name = f"{a} {name}"  # "an orange star"
    return [
        f"{the_name.capitalize()} is a {shape['kind']} filled with a {colour['adj']} colour.",
        f"{the_name.capitalize()} has {shape['corners']}.",
        f"{the_name.capitalize()} has {shape['sides']}.",
        f"The outline of {the_name} is {shape['outline']}.",
        f"{the_name.capitalize()} is coloured {cls.colour} all over, like {colour['like']}.",
        f"{the_name.capitalize()} looks like {shape['looks']} painted {cls.colour}.",
        f"{the_name.capitalize()} has a {colour['temp']}, saturated {cls.colour} hue.",
        f"You can recognise {the_name} by its {shape['feature']} and its {cls.colour} colour.",
        f"A drawing of {the_name} shows {a} {name} outline on a light background.",
        f"{the_name.capitalize()} is a flat geometric figure: a {cls.shape} in {cls.colour}.",
        f"A photo of {the_name} shows a solid {cls.colour} {cls.shape} on a plain grey background.",
    ]


def describe_shape(shape: str) -> list[str]:
    """6 deterministic description sentences of a shape of any colour, each naming the shape."""
    facts, a = _SHAPE_FACTS[shape], _article(shape)
    return [
        f"{a.capitalize()} {shape} is a {facts['kind']}.",
        f"{a.capitalize()} {shape} has {facts['corners']}.",
        f"{a.capitalize()} {shape} has {facts['sides']}.",
        f"The outline of {a} {shape} is {facts['outline']}.",
        f"{a.capitalize()} {shape} looks like {facts['looks']}.",
        f"You can recognise {a} {shape} by its {facts['feature']}, whatever its colour.",
    ]


# ---------------------------------------------------------------------------------------------------------------
# Writing the world as CoOp-format datasets
# ---------------------------------------------------------------------------------------------------------------

SHIFTED_DOMAINS: tuple[str, ...] = ("sketch", "noise")


def write_world(
    root: Path,
    *,
    seed: int,
    image_size: int,
    train_per_class: int,
    val_per_class: int,
    test_per_class: int,
    shifted_domains: Sequence[str],
    class_shades: bool = True,
) -> dict:
    """Write the photo dataset, one test-only dataset per shifted domain and the test-only shapes dataset (the
    cross-dataset target) under `root` (CoOp layout).

    Returns {dataset_id: {split: count}}."""
    _check_seed(seed)
    unknown = [d for d in shifted_domains if d not in SHIFTED_DOMAINS]
    if unknown:
        raise ValueError(f"unknown shifted domain(s) {unknown} (known: {', '.join(SHIFTED_DOMAINS)})")
    root = Path(root)
    counts = {"train": train_per_class, "val": val_per_class, "test": test_per_class}
    summary = {"synthetic": _write_dataset(root / "synthetic", "Synthetic", "photo", counts, seed, image_size,
                                           class_shades)}
    test_only = {"train": 0, "val": 0, "test": test_per_class}
    for domain in dict.fromkeys(shifted_domains):  # de-duplicated, order kept
        folder, split_name = root / f"synthetic-{domain}", f"Synthetic{domain.capitalize()}"
        summary[f"synthetic_{domain}"] = _write_dataset(folder, split_name, domain, test_only, seed, image_size,
                                                        class_shades)
    per_colour = max(1, test_per_class // 4)  # 8 colours: 2 x test_per_class images per shape
    summary["synthetic_shapes"] = _write_shapes(root / "synthetic-shapes", per_colour, seed, image_size, class_shades)
    return summary


def _write_dataset(
    folder: Path, split_name: str, domain: str, counts: Mapping[str, int], seed: int, size: int,
    class_shades: bool,
) -> dict[str, int]:
    """Images, split_zhou_<split_name>.json and descriptions.json for one domain; returns counts per split."""
    images = folder / "images"
    classes = world_classes()
    split: dict[str, list] = {}
    for split_index, split_id in enumerate(SPLITS):
        entries = []
        for cls in classes:  # entries come out ordered by (label, idx)
            if counts[split_id] > 0:
                (images / cls.folder).mkdir(parents=True, exist_ok=True)
            for idx in range(counts[split_id]):
                relpath = f"{cls.folder}/{split_id}_{idx:04d}.png"
                # Keyed by what the image is, not by when it is drawn: order-independent and reproducible.
                rng = np.random.default_rng([seed, DOMAINS.index(domain), split_index, cls.label, idx])
                render(cls, domain, rng, size, labelled_shade(cls, class_shades)).save(images / relpath, format="PNG")
                entries.append([relpath, cls.label, cls.name])
        split[split_id] = entries
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / f"split_zhou_{split_name}.json", split, sort_keys=False)  # keep train/val/test order
    _write_json(folder / "descriptions.json", {c.name: describe(c) for c in classes}, sort_keys=True)
    return {split_id: len(entries) for split_id, entries in split.items()}


def _write_shapes(folder: Path, per_colour: int, seed: int, size: int, class_shades: bool) -> dict[str, int]:
    """The cross-dataset target: a test-only dataset whose classes are the 6 shapes alone ("circle", ...), each
    drawn `per_colour` times in every colour (photo domain). A different label space from the 48-class world,
    as a second dataset is for CoOp's cross-dataset protocol; its images are rendered from their own RNG stream
    (SPLITS has 3 entries, so split index 3 is never a world image)."""
    entries = []
    for label, shape in enumerate(SHAPES):
        (folder / "images" / shape).mkdir(parents=True, exist_ok=True)
        for ci, colour in enumerate(COLOURS):
            cls = SyntheticClass(-1, colour, shape)
            for idx in range(per_colour):
                relpath = f"{shape}/{colour}_{idx:04d}.png"
                rng = np.random.default_rng([seed, DOMAINS.index("photo"), len(SPLITS), SHAPES.index(shape), ci, idx])
                shade = labelled_shade(SyntheticClass(-1, colour, shape), class_shades)
                render(cls, "photo", rng, size, shade).save(folder / "images" / relpath, format="PNG")
                entries.append([relpath, label, shape])
    _write_json(folder / "split_zhou_SyntheticShapes.json", {"train": [], "val": [], "test": entries}, sort_keys=False)
    _write_json(folder / "descriptions.json", {shape: describe_shape(shape) for shape in SHAPES}, sort_keys=True)
    return {"train": 0, "val": 0, "test": len(entries)}


def _write_json(path: Path, obj: object, *, sort_keys: bool) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n")


def _check_seed(seed: int) -> None:
    # numpy seeds must be non-negative; say so in our words rather than numpy's.
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"synthetic world seed must be a non-negative integer, got {seed!r}")


# ---------------------------------------------------------------------------------------------------------------
# Captioned images for contrastive pretraining
# ---------------------------------------------------------------------------------------------------------------

CAPTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "photo": (
        "a photo of a {}.",
        "a {}.",
        "a picture of a {}.",
        "an image of a {}.",
        "a photo of the {}.",
        "a close-up photo of a {}.",
        "a rendering of a {}.",
        "a {} on a plain background.",
    ),
    "sketch": (
        "a sketch of a {}.",
        "an outline of a {}.",
        "a drawing of a {}.",
        "a line drawing of a {}.",
        "a doodle of a {}.",
        "a {}.",
    ),
    "noise": (
        "a noisy photo of a {}.",
        "a blurry photo of a {}.",
        "a grainy photo of a {}.",
        "a low quality photo of a {}.",
        "a corrupted image of a {}.",
        "a {}.",
    ),
}

ATTRIBUTE_CAPTION_RATE = 0.2  # share of captions naming only the colour or only the shape


def captioned_batch(
    seed: int, n: int, size: int, domain_weights: Mapping[str, float],
    colours: Sequence[str] | None = None, shade_range: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """`n` captioned images (uint8 [n, size, size, 3]) of uniformly drawn classes in weighted domains.

    `colours` restricts the draw to classes of those colours: a hard-negative batch in which colour alone
    cannot tell the images apart, so the contrastive loss has to learn shape. `shade_range`: colours vary over
    the labelled datasets' whole shade range, whatever the class (`_pretraining_shade`).
    Image i depends only on (seed, i), through an RNG stream no dataset image uses, so pretraining never sees
    the evaluation images; use a different seed per training step for fresh images."""
    _check_seed(seed)
    domains, probs = _domain_distribution(domain_weights)
    classes = tuple(c for c in _classes() if colours is None or c.colour in colours)
    if not classes:
        raise ValueError(f"no class has any of the colours {list(colours or [])}")
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    captions = []
    for i in range(n):
        rng = np.random.default_rng([seed, 99, i])
        cls = classes[rng.integers(len(classes))]
        domain = domains[rng.choice(len(domains), p=probs)]
        captions.append(_caption(cls, domain, rng))
        images[i] = _render_array(cls, domain, rng, size, _pretraining_shade(rng) if shade_range else None)
    return images, captions


def _pretraining_shade(rng: np.random.Generator) -> Shade:
    """A shade drawn uniformly over the range the labelled datasets' shades span, whatever the class: the tiny
    CLIP sees every brightness and hue offset (so zero-shot stays right about the colour word) but no caption
    ever says which shade belongs to which class."""
    return Shade(rng.uniform(min(SHADE_HUE_OFFSETS), max(SHADE_HUE_OFFSETS)),
                 rng.uniform(min(SHADE_VALUES), max(SHADE_VALUES)))


def _domain_distribution(weights: Mapping[str, float]) -> tuple[tuple[str, ...], np.ndarray]:
    """Domains (in DOMAINS order, so the draw does not depend on the mapping's order) and their probabilities."""
    unknown = [d for d in weights if d not in DOMAINS]
    if unknown:
        raise ValueError(f"unknown synthetic domain(s) {unknown} in domain_weights (known: {', '.join(DOMAINS)})")
    domains = tuple(d for d in DOMAINS if d in weights)
    raw = np.array([float(weights[d]) for d in domains])
    if (raw < 0).any() or not raw.sum() > 0:
        raise ValueError(f"domain_weights must be non-negative with a positive sum, got {dict(weights)}")
    return domains, raw / raw.sum()


def _caption(cls: SyntheticClass, domain: str, rng: np.random.Generator) -> str:
    """Usually the full class name in a domain template; sometimes only one attribute ("a photo of a red shape.",
    "a sketch of a circle."), which teaches colour and shape separately and so helps unseen compositions."""
    template = CAPTION_TEMPLATES[domain][rng.integers(len(CAPTION_TEMPLATES[domain]))]
    if rng.random() >= ATTRIBUTE_CAPTION_RATE:
        return template.format(cls.name)
    return template.format(f"{cls.colour} shape" if rng.random() < 0.5 else cls.shape)
