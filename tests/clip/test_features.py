import numpy as np
import torch
from PIL import Image

from promptlab.clip.features import augmented_views, encode_images, train_transform


def test_global_matches_encode_image_and_patches_are_projected(loaded_clip):
    torch.manual_seed(0)
    images = torch.randn(3, 3, 32, 32)
    glob, patches = encode_images(loaded_clip.model, images)
    with torch.no_grad():
        torch.testing.assert_close(glob, loaded_clip.model.encode_image(images), rtol=1e-5, atol=1e-5)
        visual = loaded_clip.model.visual
        visual.output_tokens = True
        _, tokens = visual(images)
        visual.output_tokens = False
    assert patches.shape == (3, 16, 128)  # 32px / patch 8 = 4x4 patches, projected to embed_dim
    torch.testing.assert_close(patches, tokens @ visual.proj)
    assert loaded_clip.model.visual.output_tokens is False


def test_augmented_views_are_seeded_per_key(loaded_clip):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    t = train_transform(loaded_clip)
    a = augmented_views(image, "train_abc", 3, t, base_seed=0)
    b = augmented_views(image, "train_abc", 3, t, base_seed=0)
    c = augmented_views(image, "train_abd", 3, t, base_seed=0)
    assert a.shape == (3, 3, 32, 32)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # views differ from each other


def _write_split(out, split: str, n: int, maxcount: int, size: int = 32) -> list[str]:
    """n synthetic PNG samples of one split as webdataset shards of `maxcount` (the shard stage's layout)."""
    import io

    import webdataset as wds

    from promptlab.data.synthetic import render, world_classes

    classes = world_classes()
    keys = []
    with wds.ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=maxcount, mtime=0, verbose=0) as sink:
        for i in range(n):
            cls = classes[i % 6]
            buf = io.BytesIO()
            render(cls, "photo", np.random.default_rng([i]), size).save(buf, format="PNG")
            key = f"{split}_{i:04d}"
            sink.write({"__key__": key, "png": buf.getvalue(), "cls": cls.label})
            keys.append(key)
    return keys


def test_extraction_with_workers_is_byte_identical_and_in_manifest_order(loaded_clip, tmp_path):
    from promptlab.clip.extract import extract_split

    # 11 train samples over shards of 4, 4, 3; 2 views, batch 6 -> 3 samples a batch, cut per shard: 3+1, 3+1, 3;
    # 7 test samples over shards of 5, 2, batch 3 (1 view). 2 and 3 workers: batches dealt round-robin, uneven.
    expected = {"train": _write_split(tmp_path, "train", 11, maxcount=4),
                "test": _write_split(tmp_path, "test", 7, maxcount=5)}
    for split, views, batch in (("train", 2, 6), ("test", 1, 3)):
        runs = {w: extract_split(loaded_clip, tmp_path, split, n_views=views, seed=3, batch_size=batch,
                                 patches=True, crop_scale_min=0.5, num_workers=w) for w in (0, 2, 3)}
        reference, keys = runs[0]
        assert keys == expected[split]
        assert reference["global"].shape[:2] == (len(keys), views)
        for w in (2, 3):
            tensors, worker_keys = runs[w]
            assert worker_keys == keys
            assert tensors.keys() == reference.keys()
            for name, t in reference.items():
                assert t.dtype == tensors[name].dtype
                assert t.numpy().tobytes() == tensors[name].numpy().tobytes(), (split, w, name)


def test_autocast_precision_stays_close_to_fp32_and_logs_progress(loaded_clip, tmp_path):
    """bf16 autocast (the GPU setting; CPU autocast supports bf16 too) changes the stored features only by
    bf16 rounding; the progress lines count images up to the split's total."""
    from promptlab.clip.extract import extract_split

    _write_split(tmp_path, "test", 10, maxcount=4)
    lines: list[str] = []
    ref, keys = extract_split(loaded_clip, tmp_path, "test", n_views=1, seed=0, batch_size=3, patches=True)
    low, low_keys = extract_split(loaded_clip, tmp_path, "test", n_views=1, seed=0, batch_size=3, patches=True,
                                  precision="bf16", total=10, log=lines.append)
    assert low_keys == keys and low["global"].dtype == ref["global"].dtype == torch.float16
    assert not torch.equal(low["global"], ref["global"])  # autocast really ran
    cos = torch.nn.functional.cosine_similarity(low["global"].float(), ref["global"].float(), dim=-1)
    assert cos.min() > 0.99
    assert torch.allclose(low["patches"].float(), ref["patches"].float(), atol=0.05 * ref["patches"].abs().max())
    counts = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    assert counts == [3, 4, 7, 8, 10]  # batches of 3 cut per shard: shards of 4, 4, 2
    assert all(line.startswith(f"{tmp_path.name}/test: ") for line in lines)
    assert lines[-1].startswith(f"{tmp_path.name}/test: 10/10 images, ") and lines[-1].endswith(" images/s")
