"""The prompt bank's text features equal encoding its prompts directly with the frozen text encoder, for the
dataset template, CLIP's ensembles, the user's template lists (prompts.templates) and the description sentences."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from promptlab.clip.text import TextEncoder
from promptlab.prompts.bank import ENSEMBLES, ClassSet, build_class_set

NAMES = ["red circle", "blue square", "missile", "missile"]
USER = {"blurry": ["a blurry photo of a {}.", "a bad photo of the {}."], "one": ["itap of a {}."]}
SENTENCES = [["A round red shape.", "No corners."], ["Four equal sides."], ["A rocket."], ["A rocket."]]


def _direct(text, prompts: list[str]) -> torch.Tensor:
    """Each prompt encoded alone with open_clip's own encode_text (full context), normalised."""
    with torch.no_grad():
        return F.normalize(text.m.encode_text(text.tokenize(prompts)).float(), dim=-1)


def test_bank_features_equal_direct_encoding(frozen_clip):
    text = frozen_clip.text
    with torch.no_grad():
        bank = build_class_set(text, NAMES, "a photo of a {}.", ensembles=("clip7",), descriptions=SENTENCES,
                               extra_ensembles=USER)
    assert list(bank.ensembles) == ["clip7", "blurry", "one"]
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bank.hand_features, _direct(text, [f"a photo of a {n}." for n in NAMES]), **close)
    for name, templates in {"clip7": ENSEMBLES["clip7"], **USER}.items():
        per_template = torch.stack([_direct(text, [t.format(n) for n in NAMES]) for t in templates])  # [T, C, D]
        torch.testing.assert_close(bank.ensembles[name], F.normalize(per_template.mean(0), dim=-1), **close)
    flat = [s for per_class in SENTENCES for s in per_class]
    torch.testing.assert_close(bank.sentences, _direct(text, flat), **close)
    assert bank.sentence_labels.tolist() == [0, 0, 1, 2, 3]
    means = torch.stack([_direct(text, s).mean(0) for s in SENTENCES])
    torch.testing.assert_close(bank.descriptions, F.normalize(means, dim=-1), **close)
    torch.testing.assert_close(bank.descriptions[2], bank.descriptions[3])  # duplicated names, same sentences


def test_user_ensembles_survive_the_safetensors_round_trip(frozen_clip):
    with torch.no_grad():
        bank = build_class_set(frozen_clip.text, NAMES[:2], "a photo of a {}.", ensembles=(), extra_ensembles=USER)
    back = ClassSet.from_tensors(bank.names, bank.template, bank.tensors())
    assert set(back.ensembles) == {"blurry", "one"}
    torch.testing.assert_close(back.ensembles["blurry"], bank.ensembles["blurry"])
    assert back.descriptions is None


def test_prompts_stage_encodes_the_text_bank_and_user_templates(tmp_path, monkeypatch, run_stage, loaded_clip):
    import json

    import yaml
    from safetensors.torch import save_file

    from promptlab.io import load_tensors
    from promptlab.prompts.descriptions import TextBank, write_text_bank

    save_file(loaded_clip.model.state_dict(), str(tmp_path / "clip.safetensors"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "model": {"name": "promptlab-tiny", "pretrained": "clip.safetensors"},
        "prompts": {"templates": USER, "min_descriptions": 1}}))
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards/classnames.json").write_text(json.dumps(NAMES))
    source = {"backend": "file", "path": "raw/x.json", "sha256": "ab", "unmatched_keys": ["zebra"]}
    write_text_bank("desc", TextBank(NAMES, SENTENCES, source))
    run_stage("prompts", ["--dataset", "synthetic", "--shards", "shards", "--descriptions", "desc",
                          "--out", "bank", "--report", "report.json"])

    tensors, meta = load_tensors(tmp_path / "bank/bank.safetensors")
    with torch.no_grad():
        expected = build_class_set(TextEncoder(loaded_clip.model, loaded_clip.tokenizer), NAMES, meta["template"], descriptions=SENTENCES,
                                   extra_ensembles=USER)
    assert set(tensors) == set(expected.tensors())  # hand, clip80, clip7, blurry, one, descriptions, sentences
    for key, value in expected.tensors().items():
        torch.testing.assert_close(tensors[key], value, rtol=1e-5, atol=1e-5)
    doc = json.loads((tmp_path / "bank/bank.json").read_text())
    assert doc["ensembles"]["blurry"] == USER["blurry"] and set(doc["ensembles"]) == {"clip80", "clip7", *USER}
    assert doc["descriptions"] == {"file": "desc/descriptions.json", "counts": [2, 1, 1, 1], "source": source}
