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
