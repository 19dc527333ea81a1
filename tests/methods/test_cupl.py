import pytest
import torch
import torch.nn.functional as F

from promptlab.errors import UserError
from promptlab.methods.cupl.method import CuPL
from promptlab.prompts.bank import ClassSet


def test_cupl_weights_are_the_normalised_mean_of_description_features(frozen_clip, class_set, descriptions):
    per_sentence = [frozen_clip.text.encode_texts(sentences) for sentences in descriptions]  # each [S, D]
    expected = F.normalize(torch.stack([f.mean(dim=0) for f in per_sentence]), dim=-1)
    cupl = CuPL(CuPL.Config(), frozen_clip, class_set)
    torch.testing.assert_close(cupl.text_features(class_set), expected, rtol=1e-5, atol=1e-5)


def test_with_templates_mixes_descriptions_and_the_80_template_ensemble(frozen_clip, class_set):
    cupl = CuPL(CuPL.Config(with_templates=True), frozen_clip, class_set)
    expected = F.normalize(class_set.descriptions + class_set.ensembles["clip80"], dim=-1)
    torch.testing.assert_close(cupl.text_features(class_set), expected)


def test_cupl_refuses_a_bank_without_descriptions(frozen_clip, class_set):
    bare = ClassSet(class_set.names, class_set.template, class_set.hand_features, class_set.ensembles)
    with pytest.raises(UserError, match="cupl needs LLM descriptions"):
        CuPL(CuPL.Config(), frozen_clip, bare).text_features(bare)


def test_subset_keeps_descriptions_aligned(class_set):
    sub = class_set.subset([4, 1])
    assert sub.names == [class_set.names[4], class_set.names[1]]
    torch.testing.assert_close(sub.descriptions, class_set.descriptions[[4, 1]])


def test_sentence_features_are_per_sentence_and_follow_subsets(frozen_clip, class_set, descriptions):
    """Every sentence keeps its own feature and class label; subset() keeps only the chosen classes'
    sentences, class-major in the new order, relabelled."""
    flat = [s for per_class in descriptions for s in per_class]
    torch.testing.assert_close(class_set.sentences, frozen_clip.text.encode_texts(flat))
    assert class_set.sentence_labels.tolist() == [c for c, ss in enumerate(descriptions) for _ in ss]
    sub = class_set.subset([4, 1])
    expected = [s for c in (4, 1) for s in descriptions[c]]
    torch.testing.assert_close(sub.sentences, frozen_clip.text.encode_texts(expected))
    assert sub.sentence_labels.tolist() == [0] * len(descriptions[4]) + [1] * len(descriptions[1])
