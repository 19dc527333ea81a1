"""Description backend `file`: CuPL and classify-by-description JSON, matched to the dataset's class names."""

from __future__ import annotations

import hashlib
import json

import pytest

from promptlab.config import DescriptionFileParams
from promptlab.errors import UserError
from promptlab.prompts.description_files import (cbd_sentence, load_file_descriptions, match_descriptions,
                                                 normalise_key)

NAMES = ["red circle", "blue square", "green triangle"]


def test_keys_match_ignoring_case_underscores_and_whitespace():
    assert normalise_key("  Red__Circle ") == "red circle"
    entries = {"Red_Circle": ["round."], "blue  square": ["four sides."], "GREEN triangle": ["three sides."]}
    texts, unmatched = match_descriptions(NAMES, entries, "f.json")
    assert texts == [["round."], ["four sides."], ["three sides."]]
    assert unmatched == []


def test_missing_classes_are_one_error_naming_them():
    with pytest.raises(UserError) as info:
        match_descriptions(NAMES, {"red circle": ["round."]}, "f.json")
    assert str(info.value) == "f.json: no descriptions for 2 of 3 classes: 'blue square', 'green triangle'"


def test_file_keys_matching_no_class_are_reported_sorted():
    entries = {n: ["x."] for n in NAMES} | {"zebra": ["stripes."], "Apple": ["red."]}
    _, unmatched = match_descriptions(NAMES, entries, "f.json")
    assert unmatched == ["Apple", "zebra"]


def test_duplicated_class_names_both_get_the_one_entry():
    names = ["missile", "tank", "missile"]  # ImageNet has two classes named "missile"
    texts, _ = match_descriptions(names, {"missile": ["a rocket."], "tank": ["armour."]}, "f.json")
    assert texts == [["a rocket."], ["armour."], ["a rocket."]]


def test_two_keys_for_one_class_are_an_error():
    with pytest.raises(UserError, match="f.json: keys 'red circle' and 'Red_Circle' name the same class"):
        match_descriptions(NAMES, {"red circle": ["a"], "Red_Circle": ["b"]}, "f.json")


@pytest.mark.parametrize("descriptor, sentence", [
    ("a long neck", "giraffe, which is a long neck"),
    ("An animal with spots", "giraffe, which is An animal with spots"),
    ("has brown patches", "giraffe, which has brown patches"),
    ("often has dark patches", "giraffe, which often has dark patches"),
    ("can be very tall", "giraffe, which can be very tall"),
    ("brown and white fur", "giraffe, which has brown and white fur"),
    ("  four long legs ", "giraffe, which has four long legs"),
])
def test_cbd_descriptors_become_which_is_or_has_sentences(descriptor, sentence):
    assert cbd_sentence("giraffe", descriptor) == sentence


def _write(tmp_path, folder: str, name: str, obj) -> bytes:
    (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    data = json.dumps(obj).encode()
    (tmp_path / folder / name).write_bytes(data)
    return data


def test_load_fills_the_path_pattern_and_records_the_file(tmp_path):
    data = _write(tmp_path, "pets", "cupl.json", {n: [f"A {n}."] for n in NAMES} | {"extra": ["x."]})
    params = DescriptionFileParams(path="{root}/{folder}/cupl.json")
    texts, meta = load_file_descriptions(params, str(tmp_path), "pets", "oxford_pets", NAMES)
    assert texts == [[f"A {n}."] for n in NAMES]
    assert meta == {"path": f"{tmp_path}/pets/cupl.json", "format": "cupl", "unmatched_keys": ["extra"],
                    "sha256": hashlib.sha256(data).hexdigest()}


def test_load_converts_cbd_descriptors_with_the_dataset_class_name(tmp_path):
    _write(tmp_path, "d", "oxford_pets.json", {"Red_Circle": ["a disc", "no corners"], "blue square": ["a box"],
                                               "green triangle": ["can point up"]})
    params = DescriptionFileParams(path="{root}/d/{dataset}.json", format="cbd")
    texts, meta = load_file_descriptions(params, str(tmp_path), "pets", "oxford_pets", NAMES)
    assert texts == [["red circle, which is a disc", "red circle, which has no corners"],
                     ["blue square, which is a box"], ["green triangle, which can point up"]]
    assert meta["format"] == "cbd"


def test_missing_file_is_an_error_unless_allowed(tmp_path):
    with pytest.raises(UserError, match=r"nope.json: description file not found"):
        load_file_descriptions(DescriptionFileParams(path="{root}/nope.json"), str(tmp_path), "f", "d", NAMES)
    texts, meta = load_file_descriptions(DescriptionFileParams(path="{root}/nope.json", if_missing="none"),
                                         str(tmp_path), "f", "d", NAMES)
    assert texts is None and meta == {"path": f"{tmp_path}/nope.json", "format": "cupl", "missing": True}


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not valid JSON"),
    (b'["a", "b"]', "expected a JSON object"),
    (b'{"red circle": "round"}', "entry 'red circle' must be a list of strings"),
    (b'{"red circle": [1, 2]}', "entry 'red circle' must be a list of strings"),
])
def test_malformed_files_name_the_file_and_the_problem(tmp_path, content, message):
    (tmp_path / "f.json").write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        load_file_descriptions(DescriptionFileParams(path="{root}/f.json"), str(tmp_path), "x", "d", NAMES)
    assert str(info.value).startswith(f"{tmp_path}/f.json: ")


def test_unknown_placeholder_in_the_path_is_named(tmp_path):
    with pytest.raises(UserError, match=r"file.path '\{root\}/\{name\}.json': unknown placeholder 'name'"):
        load_file_descriptions(DescriptionFileParams(path="{root}/{name}.json"), str(tmp_path), "x", "d", NAMES)
