"""Token ids and padded batches, shared by training (train.py) and teacher labelling (teacher_labels.py)."""
from __future__ import annotations

import torch


def token_ids(tokens: list[str], index: dict) -> list[int]:
    """A text's tokens as vocabulary ids (unknown words -> <unk>; an empty text -> one <unk>)."""
    unk = index["<unk>"]
    return [index.get(t, unk) for t in tokens] or [unk]


def padded(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, T) zero-padded on the right, lengths (B,)) of a batch of id sequences."""
    ids = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    for j, s in enumerate(seqs):
        ids[j, :len(s)] = torch.tensor(s)
    return ids, torch.tensor([len(s) for s in seqs])
