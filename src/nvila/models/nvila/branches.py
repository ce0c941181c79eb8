"""Single-turn branches: several one-question conversations about the same media in one sequence.

A record that asks several questions about one image is usually trained as a multi-turn conversation, but
evaluated one question at a time. In a conversation, turn k sits further from the image than turn 1, so a
place in the image (a token row, say) is a different relative position in every turn. Branches keep the
single-turn layout at the conversation's cost: the ids the conversations share (the system prompt, the media,
the template up to where the questions differ) come once, then each conversation's own ids follow as a branch
that attends to the shared prefix and to itself only (an additive [b, 1, l, l] mask), its positions continuing
from the prefix as if it were the only one. Every branch is then computed exactly as its conversation alone would be.

Shapes: b rows, l ids per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nvila.prompt import IGNORE_INDEX

#: [start, end) of a branch's ids within its sample.
Span = tuple[int, int]


def share_prefix(encoded: Sequence[tuple[list[int], list[int]]]) -> tuple[list[int], list[int], list[Span]]:
    """(ids, labels, branches) of one sequence holding the (ids, labels) conversations as branches after their
    common prefix. The prefix stops before the first label of any conversation and one id short of it, so the
    first id of every branch is never a label: in the merged sequence, the id before a branch is not the one its
    first id follows in its own conversation."""
    if not encoded:
        raise ValueError("share_prefix needs at least one conversation")
    ids = [e[0] for e in encoded]
    prefix = min(len(i) for i in ids)
    for column in range(prefix):
        if len({i[column] for i in ids}) > 1:
            prefix = column
            break
    for _, labels in encoded:
        first_label = next((k for k, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
        prefix = min(prefix, max(first_label - 1, 0))
    out_ids, out_labels, branches = list(ids[0][:prefix]), [IGNORE_INDEX] * prefix, []
    for input_ids, labels in encoded:
        branches.append((len(out_ids), len(out_ids) + len(input_ids) - prefix))
        out_ids += input_ids[prefix:]
        out_labels += labels[prefix:]
    return out_ids, out_labels, branches


def branch_positions(length: int, branches: Sequence[Span]) -> list[int]:
    """Position ids of a sample of `length` ids: 0.. along it, restarting where the prefix ends in every branch."""
    if not branches:
        return list(range(length))
    prefix = branches[0][0]
    return list(range(prefix)) + [prefix + k for start, end in branches for k in range(end - start)]


def branch_mask(
    layouts: Sequence[Sequence[tuple[int, Sequence[Span]]]], length: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[b, 1, length, length] additive attention mask (0: may attend, the dtype's minimum: may not) of rows of
    samples laid side by side; additive, not bool, because transformers' eager attention adds the mask it is given.

    `layouts[r]` lists row r's samples as (their id count, their branches): each sample attends causally to
    itself only (packed samples never see each other), a branch to the shared prefix and itself; the padding
    after the last sample attends to itself only (its outputs carry no loss)."""
    allowed = torch.zeros(len(layouts), length, length, dtype=torch.bool)
    for row, samples in enumerate(layouts):
        offset = 0
        for count, branches in samples:
            end = offset + count
            allowed[row, offset:end, offset:end] = torch.ones(count, count, dtype=torch.bool).tril()
            prefix = offset + branches[0][0] if branches else end
            for start, stop in branches:  # a branch does not see the branches before it
                allowed[row, offset + start : offset + stop, prefix : offset + start] = False
            offset = end
    allowed |= torch.eye(length, dtype=torch.bool)
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
