"""The text description bank: post-processing, the minimum per class, the file between stages, and the
descriptions stage itself (backend file) on a tiny world written here."""

from __future__ import annotations

import json

import pytest
import yaml

from promptlab.config import validate_params
from promptlab.errors import UserError
from promptlab.prompts.descriptions import (TextBank, build_text_bank, clean_sentences, read_text_bank,
                                            require_minimum, write_text_bank)

NAMES = ["red circle", "blue square"]


def test_cleaning_strips_and_drops_empty_and_repeated_sentences_keeping_order():
    raw = [[" b. ", "a.", "", "b.", "   ", "a.", "c."], ["x."]]
    assert clean_sentences(raw) == [["b.", "a.", "c."], ["x."]]


def test_minimum_names_every_class_short_of_it():
    with pytest.raises(UserError) as info:
        require_minimum(["a", "b", "c"], [["1", "2"], ["1"], []], 2, "descriptions toy (file)")
    assert str(info.value) == ("descriptions toy (file): 2 classes have fewer than prompts.min_descriptions=2 "
                               "sentences: 'b' (1), 'c' (0)")
    require_minimum(["a"], [["1", "2"]], 2, "x")  # enough: no error


def _file_params(**file):
    return validate_params({"prompts": {"descriptions": {"backend": "file", "file": file}}}).prompts.descriptions


def test_file_backend_bank_is_cleaned_checked_and_records_its_source(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy/descriptions.json").write_text(json.dumps(
        {"Red_Circle": [" Round. ", "Round.", ""], "blue square": ["Square.", "Boxy."], "zebra": ["Stripes."]}))
    bank = build_text_bank(_file_params(), 1, root=str(tmp_path), folder="toy", dataset="toy", names=NAMES)
    assert bank.sentences == [["Round."], ["Square.", "Boxy."]]
    doc = bank.document()
    assert doc["counts"] == [1, 2] and doc["classnames"] == NAMES
    assert doc["source"]["backend"] == "file" and doc["source"]["unmatched_keys"] == ["zebra"]
    with pytest.raises(UserError, match=r"fewer than prompts.min_descriptions=2 sentences: 'red circle' \(1\)"):
        build_text_bank(_file_params(), 2, root=str(tmp_path), folder="toy", dataset="toy", names=NAMES)


def test_backend_none_has_no_sentences():
    params = validate_params({"prompts": {"descriptions": {"backend": "none"}}}).prompts.descriptions
    bank = build_text_bank(params, 5, root="r", folder="f", dataset="d", names=NAMES)
    assert bank == TextBank(NAMES, None, {"backend": "none"})
    assert bank.document() == {"classnames": NAMES, "sentences": None, "counts": None,
                               "source": {"backend": "none"}}


def test_text_bank_round_trips_with_identical_bytes(tmp_path):
    bank = TextBank(["missile", "tank", "missile"], [["a."], ["b.", "c."], ["a."]], {"backend": "file", "x": 1})
    write_text_bank(tmp_path / "one", bank)
    write_text_bank(tmp_path / "two", bank)
    first = (tmp_path / "one/descriptions.json").read_bytes()
    assert first == (tmp_path / "two/descriptions.json").read_bytes()
    assert read_text_bank(tmp_path / "one", bank.names) == bank  # duplicated names keep their own rows
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob(".*.tmp"))


def test_reading_a_bank_for_other_classes_is_an_error(tmp_path):
    write_text_bank(tmp_path / "b", TextBank(NAMES, [["a."], ["b."]], {}))
    with pytest.raises(UserError, match="written for other classes"):
        read_text_bank(tmp_path / "b", list(reversed(NAMES)))
    with pytest.raises(UserError, match="description bank not found"):
        read_text_bank(tmp_path / "nothing", NAMES)


def _run_stage(tmp_path, monkeypatch, run_stage, descriptions: dict):
    """stages/descriptions.py in `tmp_path` (its params.yaml, shards and data root)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"data": {"root": "raw"}, "prompts": {"descriptions": descriptions, "min_descriptions": 2}}))
    (tmp_path / "shards").mkdir(exist_ok=True)
    (tmp_path / "shards/classnames.json").write_text(json.dumps(NAMES))
    run_stage("descriptions", ["--dataset", "synthetic", "--shards", "shards", "--out", "out/synthetic"])


def test_stage_writes_the_bank_and_nothing_when_a_class_is_short(tmp_path, monkeypatch, capsys, run_stage):
    (tmp_path / "raw/synthetic").mkdir(parents=True)
    entries = {"red circle": ["Round.", "Red."], "blue square": ["Square.", "Blue."]}
    (tmp_path / "raw/synthetic/descriptions.json").write_text(json.dumps(entries))
    _run_stage(tmp_path, monkeypatch, run_stage, {"backend": "file"})
    doc = json.loads((tmp_path / "out/synthetic/descriptions.json").read_text())
    assert doc["sentences"] == [["Round.", "Red."], ["Square.", "Blue."]] and doc["counts"] == [2, 2]
    assert doc["source"]["path"] == "raw/synthetic/descriptions.json"
    assert "descriptions synthetic: 4 sentences for 2 classes (file)" in capsys.readouterr().out

    entries["blue square"] = ["Square.", " Square. "]  # one sentence after cleaning: below the minimum of 2
    (tmp_path / "raw/synthetic/descriptions.json").write_text(json.dumps(entries))
    (tmp_path / "out/synthetic/descriptions.json").unlink()
    (tmp_path / "out/synthetic").rmdir()
    with pytest.raises(SystemExit) as exit_info:
        _run_stage(tmp_path, monkeypatch, run_stage, {"backend": "file"})
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("error: descriptions synthetic (file): 1 classes have fewer than "
                                       "prompts.min_descriptions=2 sentences: 'blue square' (1)\n")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
