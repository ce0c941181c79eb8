"""Single-turn branches: one sample holding several one-question conversations computes each as if alone."""

from __future__ import annotations

import pytest
import torch

from nvila.data import collate_packed, collate_padded
from nvila.models.nvila.branches import branch_mask, branch_positions, share_prefix
from nvila.prompt import IGNORE_INDEX
from tests.conftest import noise_image

X = IGNORE_INDEX


def test_the_prefix_stops_where_the_conversations_differ_and_before_any_label():
    a = ([1, 2, 3, 4, 5], [X, X, X, X, 5])
    b = ([1, 2, 3, 7, 8, 9], [X, X, X, X, 8, 9])
    ids, labels, branches = share_prefix([a, b])
    assert ids == [1, 2, 3, 4, 5, 7, 8, 9] and labels == [X, X, X, X, 5, X, 8, 9]
    assert branches == [(3, 5), (5, 8)]
    assert branch_positions(len(ids), branches) == [0, 1, 2, 3, 4, 3, 4, 5]
    # the same ids up to a label: the prefix stops one id before the first label, so no branch starts on one
    same = ([1, 2, 3, 4], [X, X, 3, 4])
    ids, labels, branches = share_prefix([same, same])
    assert branches == [(1, 4), (4, 7)] and [labels[start] for start, _ in branches] == [X, X]
    with pytest.raises(ValueError):
        share_prefix([])


def test_a_branch_sees_the_prefix_and_itself_and_packed_samples_never_see_each_other():
    mask = branch_mask([[(3, []), (5, [(2, 4), (4, 5)])]], 9)[0, 0] == 0  # additive: 0 where it may attend
    assert mask.shape == (9, 9)
    assert mask[:3, :3].equal(torch.ones(3, 3, dtype=torch.bool).tril()) and not mask[3:, :3].any()
    rows = {k: mask[k].nonzero()[:, 0].tolist() for k in range(3, 9)}
    assert rows[5] == [3, 4, 5] and rows[6] == [3, 4, 5, 6]  # branch 1: the prefix (3, 4) and itself
    assert rows[7] == [3, 4, 7]  # branch 2 skips branch 1
    assert rows[8] == [8]  # padding: itself only


def chat(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


@pytest.mark.parametrize(("packed", "attention"), [(False, "sdpa"), (True, "sdpa"), (True, "eager")])
def test_branched_questions_get_the_logits_of_each_question_asked_alone(tiny, packed, attention, request):
    model, processor = tiny
    before = model.llm.config._attn_implementation
    request.addfinalizer(lambda: model.llm.set_attn_implementation(before))
    model.llm.set_attn_implementation(attention)  # eager attention adds the mask: a bool one would be wrong
    image = [noise_image(300, 200, 3)]
    turns = [("<image>\nHow many?", "three"), ("<image>\nWhat colour is it?", "a dark red"), ("<image>\nWhy?", "no")]
    alone = [processor.encode_messages(chat(q, a), image) for q, a in turns]
    branched = processor.encode_branches([chat(q, a) for q, a in turns], image)
    assert len(branched.branches) == 3 and len(branched.tiles) == len(alone[0].tiles)
    tokens = processor.config.image_token_id
    assert branched.input_ids.count(tokens) == alone[0].input_ids.count(tokens)  # the image once
    assert len(branched.input_ids) < sum(len(s.input_ids) for s in alone)
    other = processor.encode_messages(chat("Say hi", "hi there"), [])  # an unbranched sample in the same batch
    cfg, pad = processor.config, processor.pad_token_id
    batch = collate_packed([[other, branched]], pad, cfg) if packed else collate_padded([other, branched], pad, cfg)
    assert batch.attention_mask.shape[1:] == (1, batch.input_ids.shape[1], batch.input_ids.shape[1])
    with torch.no_grad():
        out = model(**batch.model_kwargs("cpu")).logits
        singles = [model(**collate_padded([s], pad, cfg).model_kwargs("cpu")).logits[0] for s in alone]
    row, offset = (0, len(other.input_ids)) if packed else (1, 0)
    prefix = branched.branches[0][0]
    for (start, end), single in zip(branched.branches, singles):
        torch.testing.assert_close(out[row, offset + start : offset + end], single[prefix:], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out[row, offset : offset + prefix], singles[0][:prefix], atol=1e-4, rtol=1e-4)
    answers = [processor.tokenizer.decode([t for t in branched.labels[s:e] if t != X]) for s, e in branched.branches]
    assert [a.removesuffix("<|im_end|>").strip() for a in answers] == [a for _, a in turns]


def test_branches_must_share_their_media(tiny):
    from nvila.errors import PromptError

    _, processor = tiny
    with pytest.raises(PromptError, match="share their media"):
        processor.encode_branches([chat("<image>\nA?", "a"), chat("B? <image>", "b")], [noise_image(64, 64, 1)])


def test_branches_tile_their_media_once(tiny, monkeypatch):
    from nvila.video_io import VideoFrames

    _, processor = tiny
    calls = []
    tile = processor.image_processor.tile
    monkeypatch.setattr(processor.image_processor, "tile", lambda *a, **k: calls.append(1) or tile(*a, **k))
    questions = [chat(f"<image>\nQuestion {i}?", str(i)) for i in range(4)]
    branched = processor.encode_branches(questions, [noise_image(300, 200, 3)])
    assert len(calls) == 1 and len(branched.branches) == 4
    alone = processor.encode_messages(questions[0], [noise_image(300, 200, 3)])
    assert len(branched.tiles) == len(alone.tiles) and branched.block_sizes == alone.block_sizes
    frames = VideoFrames([noise_image(64, 64, s) for s in range(4)], [0.0, 0.5, 1.0, 1.5], 2.0, 2.0, 4)
    video = processor.encode_branches([chat(f"<vila/video>\nWhen {i}?", str(i)) for i in range(3)], videos=[frames])
    assert len(video.video_tiles) == 4 and video.video_frame_counts == [4]
