"""CoOp-format reading, few-shot sampling and the base/new split (docs/protocols.md)."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from promptlab.data.coop_format import Item, base_new_labels, classnames, read_split, sample_few_shot
from promptlab.data.registry import DatasetSpec
from promptlab.errors import UserError

SPEC = DatasetSpec(id="toy", folder="toy", images="images", split="split_zhou_Toy.json", template="a photo of a {}.")


def _write_split(root, split: dict) -> None:
    folder = root / "toy"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "split_zhou_Toy.json").write_text(json.dumps(split))


def _pool(n_classes: int, per_class: int, split: str = "train") -> list[Item]:
    return [Item(split, f"c{c}/img_{i:03d}.jpg", c, f"class {c}") for c in range(n_classes) for i in range(per_class)]


# --- read_split ------------------------------------------------------------------------------------------------------


def test_read_split_reads_entries_and_replaces_underscores(tmp_path):
    _write_split(tmp_path, {
        "train": [["red_circle/a.png", 0, "red_circle"], ["big_blue_square/b.png", 1, "big_blue_square"]],
        "val": [["red_circle/c.png", 0, "red_circle"]],
        "test": [["big_blue_square/d.png", "1", "big_blue_square"]],
    })
    out = read_split(SPEC, tmp_path)
    assert set(out) == {"train", "val", "test"}
    assert out["train"] == [Item("train", "red_circle/a.png", 0, "red circle"),
                            Item("train", "big_blue_square/b.png", 1, "big blue square")]
    assert out["val"] == [Item("val", "red_circle/c.png", 0, "red circle")]
    assert out["test"] == [Item("test", "big_blue_square/d.png", 1, "big blue square")]  # label coerced to int
    assert isinstance(out["test"][0].label, int)


def test_read_split_missing_splits_are_empty(tmp_path):
    _write_split(tmp_path, {"test": [["x/a.png", 0, "x"]]})
    out = read_split(SPEC, tmp_path)
    assert out["train"] == [] and out["val"] == []
    assert out["test"] == [Item("test", "x/a.png", 0, "x")]


def test_read_split_rejects_entries_escaping_the_image_folder(tmp_path):
    _write_split(tmp_path, {"train": [["ok/a.png", 0, "ok"]], "val": [],
                            "test": [["ok/b.png", 0, "ok"], ["../outside.png", 0, "ok"]]})
    with pytest.raises(UserError) as info:
        read_split(SPEC, tmp_path)
    msg = str(info.value)
    assert "'../outside.png'" in msg
    assert "split_zhou_Toy.json" in msg


def test_read_split_rejects_absolute_paths(tmp_path):
    _write_split(tmp_path, {"train": [["/etc/passwd", 0, "x"]], "test": []})
    with pytest.raises(UserError, match="/etc/passwd"):
        read_split(SPEC, tmp_path)


def test_read_split_missing_split_file(tmp_path):
    with pytest.raises(UserError) as info:
        read_split(SPEC, tmp_path)
    assert str(tmp_path / "toy" / "split_zhou_Toy.json") in str(info.value)


# --- classnames ------------------------------------------------------------------------------------------------------


def test_classnames_are_indexed_by_label():
    items = [Item("train", "b", 2, "cat"), Item("test", "a", 0, "dog"), Item("val", "c", 1, "fish"),
             Item("test", "d", 2, "cat")]
    assert classnames(items) == ["dog", "fish", "cat"]


def test_classnames_of_nothing_is_empty():
    assert classnames([]) == []


def test_classnames_conflicting_names_raise():
    items = [Item("train", "a", 0, "dog"), Item("train", "b", 1, "cat"), Item("test", "c", 1, "kitten")]
    with pytest.raises(UserError) as info:
        classnames(items)
    msg = str(info.value)
    assert "label 1" in msg and "'cat'" in msg and "'kitten'" in msg


def test_classnames_empty_class_raises():
    items = [Item("train", "a", 0, "dog"), Item("train", "b", 2, "cat"), Item("test", "c", 4, "cow")]
    with pytest.raises(UserError) as info:
        classnames(items)
    assert "[1, 3]" in str(info.value)


# --- sample_few_shot ----------------------------------------------------------------------------------------------------


def test_few_shot_draws_k_per_class_without_replacement():
    pool = _pool(5, 10)
    drawn = sample_few_shot(pool, shots=4, seed=1)
    assert Counter(it.label for it in drawn) == {c: 4 for c in range(5)}
    assert len(set(drawn)) == len(drawn) == 20  # without replacement
    assert set(drawn) <= set(pool)
    assert [it.label for it in drawn] == sorted(it.label for it in drawn)  # grouped by label, in label order


def test_few_shot_takes_all_items_of_small_classes():
    pool = _pool(3, 6) + [Item("train", "small/a.jpg", 3, "small"), Item("train", "small/b.jpg", 3, "small")]
    drawn = sample_few_shot(pool, shots=4, seed=0)
    counts = Counter(it.label for it in drawn)
    assert counts == {0: 4, 1: 4, 2: 4, 3: 2}
    assert {it for it in drawn if it.label == 3} == {it for it in pool if it.label == 3}
    # exactly K available: all of them too
    exact = _pool(2, 4)
    assert set(sample_few_shot(exact, shots=4, seed=9)) == set(exact)


def test_few_shot_same_seed_same_draw():
    pool = _pool(6, 20)
    assert sample_few_shot(pool, 5, seed=3) == sample_few_shot(pool, 5, seed=3)


def test_few_shot_different_seeds_differ():
    pool = _pool(6, 20)
    a, b = sample_few_shot(pool, 5, seed=1), sample_few_shot(pool, 5, seed=2)
    assert set(a) != set(b)
    # each still a valid draw
    assert Counter(it.label for it in b) == {c: 5 for c in range(6)}


def test_few_shot_does_not_depend_on_input_order():
    pool = _pool(6, 20)
    reference = sample_few_shot(pool, 5, seed=7)
    for s in range(5):
        shuffled = pool[:]
        random.Random(s).shuffle(shuffled)
        assert shuffled != pool
        assert sample_few_shot(shuffled, 5, seed=7) == reference
    assert sample_few_shot(pool[::-1], 5, seed=7) == reference


def test_few_shot_of_nothing_is_nothing():
    assert sample_few_shot([], 16, seed=1) == []


# --- base/new ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, base, new", [
    (5, [0, 1, 2], [3, 4]),
    (4, [0, 1], [2, 3]),
    (1, [0], []),
    (0, [], []),
    (48, list(range(24)), list(range(24, 48))),
    (101, list(range(51)), list(range(51, 101))),  # Caltech101: ceil(101/2) = 51 base classes
])
def test_base_new_labels(n, base, new):
    assert base_new_labels(n) == (base, new)
