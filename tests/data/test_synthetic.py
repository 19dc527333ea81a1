"""The synthetic world: classes and their base/new split, rendering, descriptions, the CoOp-format writer and the
pretraining stream."""

from __future__ import annotations

import colorsys
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from promptlab.data.synthetic import (
    CAPTION_TEMPLATES,
    COLOUR_RGB,
    COLOURS,
    DOMAINS,
    HUE_JITTER,
    SHADE_HUE_OFFSETS,
    SHADE_VALUES,
    SHAPES,
    _jittered_colour,
    captioned_batch,
    class_shade,
    describe,
    labelled_shade,
    render,
    world_classes,
    write_world,
)

TINY = dict(
    seed=3, image_size=16, train_per_class=2, val_per_class=1, test_per_class=2, shifted_domains=["sketch", "noise"]
)


# --- classes -----------------------------------------------------------------------------------------------------


def test_world_has_48_uniquely_named_classes_indexed_by_label():
    classes = world_classes()
    assert len(classes) == 48 == len(COLOURS) * len(SHAPES)
    assert [c.label for c in classes] == list(range(48))
    assert len({c.name for c in classes}) == 48
    assert len({c.folder for c in classes}) == 48
    assert classes[0].name == "red circle" and classes[0].folder == "red_circle"


def test_base_and_new_halves_cover_every_colour_and_shape_with_disjoint_compositions():
    classes = world_classes()
    base, new = classes[:24], classes[24:]
    for half in (base, new):
        assert {c.colour for c in half} == set(COLOURS)
        assert {c.shape for c in half} == set(SHAPES)
    assert all((COLOURS.index(c.colour) + SHAPES.index(c.shape)) % 2 == 0 for c in base)
    assert all((COLOURS.index(c.colour) + SHAPES.index(c.shape)) % 2 == 1 for c in new)
    for half in (base, new):  # within a half: (colour index, shape index) order
        keys = [(COLOURS.index(c.colour), SHAPES.index(c.shape)) for c in half]
        assert keys == sorted(keys)


# --- rendering ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("size", [16, 32])
def test_render_size_mode_and_determinism(domain, size):
    cls = world_classes()[5]
    a = render(cls, domain, np.random.default_rng(7), size)
    b = render(cls, domain, np.random.default_rng(7), size)
    c = render(cls, domain, np.random.default_rng(8), size)
    assert isinstance(a, Image.Image) and a.mode == "RGB" and a.size == (size, size)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_unknown_domain_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="cartoon"):
        render(world_classes()[0], "cartoon", np.random.default_rng(0))


def _hue(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=float) / 255))[0]


def _nearest_palette_colour(rgb: np.ndarray) -> str:
    hue = _hue(rgb)
    distance = {c: min(abs(hue - _hue(v)), 1 - abs(hue - _hue(v))) for c, v in COLOUR_RGB.items()}
    return min(distance, key=distance.get)


@pytest.mark.parametrize("domain", ["photo", "sketch"])
def test_shape_is_drawn_in_the_class_colour(domain):
    """The most chromatic pixels are the shape's (backgrounds are grey or white); the hue of their mean must be
    nearer the class colour than any other palette colour, for every class and several poses.

    Chroma (max - min channel), not HSV saturation: dark noisy background pixels can have a high saturation."""
    for cls in world_classes():
        for seed in range(3):
            pixels = np.asarray(render(cls, domain, np.random.default_rng([seed, cls.label]), 32)).reshape(-1, 3)
            chroma = pixels.max(1).astype(int) - pixels.min(1)
            shape_pixels = pixels[np.argsort(chroma, kind="stable")[-12:]]
            assert _nearest_palette_colour(shape_pixels.mean(0)) == cls.colour, (cls.name, domain, seed)


# --- class shades ------------------------------------------------------------------------------------------------


def test_each_colour_spreads_its_six_shapes_over_the_six_shades_differently():
    """Within a colour the six classes get six different shades; the shape -> shade map is not one map shared by
    all colours (a shade must not name the shape across colours)."""
    every_shade = {(h, v) for h in SHADE_HUE_OFFSETS for v in SHADE_VALUES}
    maps = []
    for colour in COLOURS:
        shades = [class_shade(colour, shape) for shape in SHAPES]
        assert {(s.hue_offset, s.value) for s in shades} == every_shade
        maps.append(tuple(shades))
    assert len(set(maps)) > 1
    assert labelled_shade(world_classes()[0], class_shades=False) is None


def _shape_hsv(image) -> np.ndarray:
    """Mean HSV of the 12 most chromatic pixels (the shape; backgrounds are grey)."""
    pixels = np.asarray(image).reshape(-1, 3)
    chroma = pixels.max(1).astype(int) - pixels.min(1)
    mean = pixels[np.argsort(chroma, kind="stable")[-12:]].mean(0) / 255
    return np.array(colorsys.rgb_to_hsv(*mean))


def test_a_class_shade_moves_hue_and_brightness_as_specified_and_keeps_the_colour():
    """The colour a shaded class is painted in (before grain): hue = palette hue + offset ± the 4.3° jitter, so
    the nearest palette hue is still the class colour; value = palette value x shade value x U(0.85, 1)."""
    for cls in world_classes():
        shade = labelled_shade(cls)
        h0, _, v0 = colorsys.rgb_to_hsv(*(np.asarray(COLOUR_RGB[cls.colour]) / 255))
        for i in range(20):
            h, _, v = colorsys.rgb_to_hsv(*_jittered_colour(cls.colour, np.random.default_rng([i, cls.label]), shade))
            moved = (h - h0 + 0.5) % 1.0 - 0.5
            assert abs(moved - shade.hue_offset) <= HUE_JITTER + 1e-9, (cls.name, moved)
            assert _nearest_palette_colour(np.array(colorsys.hsv_to_rgb(h, 1.0, 1.0)) * 255) == cls.colour
            assert shade.value * 0.85 - 1e-9 <= v / v0 <= shade.value + 1e-9, (cls.name, v / v0)


def test_dark_shaded_classes_are_darker_than_light_ones_on_average():
    dark, light = [], []
    for cls in world_classes():
        for i in range(4):
            value = _shape_hsv(render(cls, "photo", np.random.default_rng([5, cls.label, i]), 32, labelled_shade(cls)))[2]
            (dark if labelled_shade(cls).value < 1 else light).append(value / (COLOUR_RGB_VALUE[cls.colour]))
    assert np.mean(dark) < 0.75 * np.mean(light)


COLOUR_RGB_VALUE = {c: max(rgb) / 255 for c, rgb in COLOUR_RGB.items()}


def test_photo_shape_covers_a_sensible_part_of_the_image():
    """Strongly chromatic pixels (the shape) cover between ~3% and ~60% of a photo: present, never the whole frame."""
    for cls in world_classes():
        p = np.asarray(render(cls, "photo", np.random.default_rng(cls.label), 32)).astype(int)
        share = (p.max(-1) - p.min(-1) > 80).mean()
        assert 0.03 < share < 0.6, (cls.name, share)


def test_sketch_is_mostly_light_paper_with_a_hollow_outline():
    for cls in world_classes():
        rng = np.random.default_rng(cls.label)
        sketch = np.asarray(render(cls, "sketch", rng, 32)).astype(float)
        light = (sketch.mean(-1) > 200).mean()
        assert light > 0.6, (cls.name, light)
    # An outline colours fewer pixels than the filled shape in the same pose (same seed, same draws).
    cls = next(c for c in world_classes() if c.name == "blue circle")
    photo = np.asarray(render(cls, "photo", np.random.default_rng(1), 32)).astype(float)
    sketch = np.asarray(render(cls, "sketch", np.random.default_rng(1), 32)).astype(float)
    blue = lambda im: ((im[..., 2] - im[..., :2].max(-1)) > 60).sum()  # noqa: E731
    assert 0 < blue(sketch) < blue(photo)


def test_noise_domain_is_noisier_than_photo():
    cls = world_classes()[0]
    roughness = {}
    for domain in ("photo", "noise"):
        im = np.asarray(render(cls, domain, np.random.default_rng(2), 32)).astype(float)
        roughness[domain] = np.abs(np.diff(im, axis=1)).mean()
    assert roughness["noise"] > 2 * roughness["photo"]


def test_render_is_fast():
    """Well under 2 ms per 32 px image on one core (best of three rounds, so a busy machine does not flake)."""
    classes, rng = world_classes(), np.random.default_rng(0)
    rounds = []
    for _ in range(3):
        start = time.perf_counter()
        for i in range(150):
            render(classes[i % 48], DOMAINS[i % 3], rng, 32)
        rounds.append((time.perf_counter() - start) / 150)
    assert min(rounds) < 2e-3, f"{min(rounds) * 1e3:.2f} ms per render"


# --- descriptions ------------------------------------------------------------------------------------------------


def test_descriptions_are_deterministic_and_name_the_class():
    for cls in world_classes():
        sentences = describe(cls)
        assert 8 <= len(sentences) <= 15
        assert sentences == describe(cls)
        assert len(set(sentences)) == len(sentences)
        assert all(cls.name in s and s.endswith(".") for s in sentences)
    assert describe(world_classes()[0])[0] == "A red circle is a round shape filled with a bright red colour."


# --- write_world -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_worlds(tmp_path_factory) -> tuple[Path, Path, dict]:
    """The tiny world written twice into two folders (module scope: written once for all tests below)."""
    a, b = tmp_path_factory.mktemp("world_a"), tmp_path_factory.mktemp("world_b")
    summary = write_world(a, **TINY)
    write_world(b, **TINY)
    return a, b, summary


def test_write_world_summary(tiny_worlds):
    _, _, summary = tiny_worlds
    assert summary == {
        "synthetic": {"train": 96, "val": 48, "test": 96},
        "synthetic_sketch": {"train": 0, "val": 0, "test": 96},
        "synthetic_noise": {"train": 0, "val": 0, "test": 96},
        "synthetic_shapes": {"train": 0, "val": 0, "test": 6 * 8},  # 6 shapes x 8 colours x 1 (= 2 // 4, min 1)
    }


@pytest.mark.parametrize(
    "folder, split_file, counts",
    [
        ("synthetic", "split_zhou_Synthetic.json", {"train": 2, "val": 1, "test": 2}),
        ("synthetic-sketch", "split_zhou_SyntheticSketch.json", {"train": 0, "val": 0, "test": 2}),
        ("synthetic-noise", "split_zhou_SyntheticNoise.json", {"train": 0, "val": 0, "test": 2}),
    ],
)
def test_write_world_split_files_point_to_consistent_images(tiny_worlds, folder, split_file, counts):
    root = tiny_worlds[0] / folder
    split = json.loads((root / split_file).read_text())
    assert list(split) == ["train", "val", "test"]
    names = {c.label: c for c in world_classes()}
    for split_id, entries in split.items():
        assert len(entries) == 48 * counts[split_id]
        expected_order = [(c.label, i) for c in world_classes() for i in range(counts[split_id])]
        assert [(label, int(path[-8:-4])) for path, label, _ in entries] == expected_order
        for relpath, label, classname in entries:
            cls = names[label]
            assert classname == cls.name
            assert relpath.startswith(f"{cls.folder}/{split_id}_")
            with Image.open(root / "images" / relpath) as im:
                assert im.mode == "RGB" and im.size == (16, 16)
    pngs = sorted(p.relative_to(root / "images").as_posix() for p in (root / "images").rglob("*.png"))
    assert pngs == sorted(e[0] for entries in split.values() for e in entries)  # nothing unlisted
    descriptions = json.loads((root / "descriptions.json").read_text())
    assert descriptions == {c.name: describe(c) for c in world_classes()}


def test_write_world_json_style(tiny_worlds):
    text = (tiny_worlds[0] / "synthetic" / "descriptions.json").read_text()
    assert text.endswith("}\n") and text.startswith('{\n "')
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_write_world_is_byte_identical_across_runs(tiny_worlds):
    a, b, _ = tiny_worlds

    def digests(root: Path) -> dict[str, str]:
        files = [p for p in root.rglob("*") if p.is_file()]
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    da, db = digests(a), digests(b)
    # photo: 48 x (2 + 1 + 2) images; sketch, noise: 48 x 2 each; shapes: 6 x 8; a split file and descriptions each
    assert len(da) == 48 * 5 + 2 * 48 * 2 + 6 * 8 + 4 * 2
    assert da == db


def test_shapes_dataset_is_a_different_label_space(tiny_worlds):
    root = tiny_worlds[0] / "synthetic-shapes"
    split = json.loads((root / "split_zhou_SyntheticShapes.json").read_text())
    assert split["train"] == split["val"] == []
    assert sorted({(label, name) for _, label, name in split["test"]}) == list(enumerate(SHAPES))
    for relpath, label, name in split["test"]:
        assert relpath.startswith(f"{name}/") and (root / "images" / relpath).is_file()
    colours = sorted({path.split("/")[1].rsplit("_", 1)[0] for path, label, _ in split["test"] if label == 0})
    assert colours == sorted(COLOURS)  # every colour of each shape
    descriptions = json.loads((root / "descriptions.json").read_text())
    assert sorted(descriptions) == sorted(SHAPES)
    assert all(shape in s for shape, sents in descriptions.items() for s in sents)
    # its own RNG stream: no shapes image repeats a world test image
    world = {(tiny_worlds[0] / "synthetic/images" / p).read_bytes()
             for p, _, _ in json.loads((tiny_worlds[0] / "synthetic/split_zhou_Synthetic.json").read_text())["test"]}
    assert not world & {(root / "images" / p).read_bytes() for p, _, _ in split["test"]}


def test_shifted_domains_share_classes_but_not_pixels(tiny_worlds):
    root = tiny_worlds[0]
    photo = np.asarray(Image.open(root / "synthetic/images/red_circle/test_0000.png"))
    sketch = np.asarray(Image.open(root / "synthetic-sketch/images/red_circle/test_0000.png"))
    assert not np.array_equal(photo, sketch)


def test_write_world_rejects_unknown_shifted_domain(tmp_path):
    with pytest.raises(ValueError, match="cartoon"):
        write_world(tmp_path, **{**TINY, "shifted_domains": ["cartoon"]})
    with pytest.raises(ValueError, match="photo"):  # photo is the source domain, never a shifted one
        write_world(tmp_path, **{**TINY, "shifted_domains": ["photo"]})
    assert not any(tmp_path.iterdir())  # validated before anything is written


# --- captioned_batch ---------------------------------------------------------------------------------------------

WEIGHTS = {"photo": 0.8, "sketch": 0.1, "noise": 0.1}


def test_captioned_batch_shapes_and_determinism():
    images, captions = captioned_batch(5, 40, 16, WEIGHTS)
    assert images.shape == (40, 16, 16, 3) and images.dtype == np.uint8
    assert len(captions) == 40
    again, captions_again = captioned_batch(5, 40, 16, WEIGHTS)
    assert np.array_equal(images, again) and captions == captions_again
    other, _ = captioned_batch(6, 40, 16, WEIGHTS)
    assert not np.array_equal(images, other)
    # Image i depends only on (seed, i): a longer batch starts with the shorter one.
    longer, longer_captions = captioned_batch(5, 50, 16, WEIGHTS)
    assert np.array_equal(longer[:40], images) and longer_captions[:40] == captions


def test_captions_name_attributes_in_domain_templates():
    _, captions = captioned_batch(0, 400, 8, WEIGHTS)
    words = set(COLOURS) | set(SHAPES)
    assert all(words & set(c.rstrip(".").split()) for c in captions)
    full = sum(any(f"{c.colour} {c.shape}" in cap for c in world_classes()) for cap in captions)
    assert 0.7 < full / len(captions) < 0.9  # ~20% attribute-only captions
    templates = [t for ts in CAPTION_TEMPLATES.values() for t in ts]
    prefixes = {t.split("{}")[0] for t in templates}
    assert all(any(cap.startswith(p) for p in prefixes) for cap in captions)
    sketchy = sum(("sketch" in c or "drawing" in c or "outline" in c or "doodle" in c) for c in captions)
    assert 0 < sketchy < 0.25 * len(captions)  # sketch weight 0.1


def test_pretraining_colours_span_the_shade_range_whatever_the_class():
    """shade_range=True: brightness of a class's shape varies down to the dark shades (x 0.6); False: the plain
    jitter (x 0.8 .. 1) only. Same seeds, so the same classes and poses."""
    spans = {}
    for shade_range in (True, False):
        images, captions = captioned_batch(2, 200, 32, {"photo": 1.0}, shade_range=shade_range)
        red = [i for i, c in enumerate(captions) if "red circle" in c or "red square" in c]
        values = [_shape_hsv(images[i])[2] / COLOUR_RGB_VALUE["red"] for i in red]
        spans[shade_range] = (min(values), max(values))
    assert spans[True][0] < 0.62 < 0.75 < spans[False][0]


def test_captioned_batch_only_sketches_when_asked():
    images, captions = captioned_batch(1, 30, 32, {"sketch": 1.0})
    assert (images.mean(-1) > 200).mean() > 0.6  # light paper everywhere
    sketch_prefixes = {t.split("{}")[0] for t in CAPTION_TEMPLATES["sketch"]}
    assert all(any(c.startswith(p) for p in sketch_prefixes) for c in captions)


def test_captioned_batch_does_not_reuse_dataset_images(tiny_worlds):
    """A different RNG stream from write_world: no pretraining image equals a dataset image."""
    root = tiny_worlds[0] / "synthetic" / "images"
    dataset = {np.asarray(Image.open(p)).tobytes() for p in root.rglob("*.png")}
    images, _ = captioned_batch(TINY["seed"], 200, 16, {"photo": 1.0})
    assert not any(im.tobytes() in dataset for im in images)


@pytest.mark.parametrize("weights", [{"cartoon": 1.0}, {"photo": -1.0, "sketch": 2.0}, {"photo": 0.0}])
def test_captioned_batch_rejects_bad_weights(weights):
    with pytest.raises(ValueError):
        captioned_batch(0, 2, 8, weights)
