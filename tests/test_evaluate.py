"""Protocol bookkeeping in evaluate.py: CoOp's base/new relabelling."""

from __future__ import annotations

import torch

from promptlab.data.coop_format import base_new_labels
from promptlab.evaluate import relabel


def test_relabel_by_hand():
    labels = torch.tensor([0, 3, 1, 3, 2])
    mask, new = relabel(labels, [3, 1])
    # rows with label 3 or 1 are kept; 3 -> position 0 in keep, 1 -> position 1
    assert mask.tolist() == [False, True, True, True, False]
    assert mask.dtype == torch.bool
    assert new.tolist() == [0, 1, 0]
    assert new.dtype == torch.long


def test_relabel_base_and_new_split():
    labels = torch.tensor([4, 0, 2, 3, 1, 4, 2])
    base, new = base_new_labels(5)  # [0, 1, 2], [3, 4]
    bmask, blabels = relabel(labels, base)
    nmask, nlabels = relabel(labels, new)
    assert bmask.tolist() == [False, True, True, False, True, False, True]
    assert blabels.tolist() == [0, 2, 1, 2]
    assert nmask.tolist() == [True, False, False, True, False, True, False]
    assert nlabels.tolist() == [1, 0, 1]  # 4 -> 1, 3 -> 0, 4 -> 1
    assert (bmask ^ nmask).all()  # base and new partition the rows


def test_relabel_keep_beyond_the_labels_present():
    labels = torch.tensor([0, 1, 1])
    mask, new = relabel(labels, [7, 1])
    assert mask.tolist() == [False, True, True]
    assert new.tolist() == [1, 1]
    mask, new = relabel(labels, [9])
    assert mask.tolist() == [False, False, False] and new.tolist() == []


def test_relabel_empty_labels():
    mask, new = relabel(torch.tensor([], dtype=torch.long), [0, 1])
    assert mask.tolist() == [] and new.tolist() == []
