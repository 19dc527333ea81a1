import torch

from promptlab.io import load_tensors, save_tensors


def test_load_tensors_can_leave_large_tensors_on_disk(tmp_path):
    path = tmp_path / "f.safetensors"
    tensors = {"global": torch.randn(3, 1, 4), "patches": torch.randn(3, 1, 16, 4), "labels": torch.arange(3)}
    save_tensors(path, tensors, {"keys": ["a", "b", "c"]})
    full, meta = load_tensors(path)
    lean, lean_meta = load_tensors(path, skip=("patches",))
    assert meta == lean_meta == {"keys": ["a", "b", "c"]}
    assert set(full) == {"global", "patches", "labels"} and set(lean) == {"global", "labels"}
    assert all(torch.equal(lean[k], tensors[k]) for k in lean)


def test_empty_tensor_file_round_trips(tmp_path):
    save_tensors(tmp_path / "e.safetensors", {})  # zero-shot methods learn nothing
    assert load_tensors(tmp_path / "e.safetensors") == ({}, {})
