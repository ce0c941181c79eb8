"""Records, dataset skipping, padding and packing (packed == padded, samples isolated)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nvila.data import ConversationDataset, collate_packed, collate_padded, pack_greedy, read_records
from nvila.errors import ConfigError
from nvila.factory import random_pretrained
from nvila.models.nvila.geometry import image_tokens
from nvila.prompt import IGNORE_INDEX
from nvila.synth.videos import encode_mp4
from tests.conftest import noise_image


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def qa(i, image=None, question="What is it?", answer="a cat"):
    record = {"id": f"r{i}", "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}
    if image:
        record["image"] = image
    return record


def test_read_records_json_and_jsonl(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [qa(0, "a.png", "<image>\nQ?"), {**qa(1), "source": "other"}])
    records = read_records(tmp_path / "d.jsonl")
    assert [r.source for r in records] == ["d", "other"]
    assert records[0].images == [tmp_path / "a.png"]
    assert records[0].messages[0] == {"role": "user", "content": "<image>\nQ?"}
    (tmp_path / "d.json").write_text(json.dumps([qa(0), qa(1)]))
    assert len(read_records(tmp_path / "d.json")) == 2


@pytest.mark.parametrize(
    "lines,match",
    [
        (['{"id": 1, "conversations": []}'], r"d\.jsonl:1: 'conversations'"),
        ([json.dumps(qa(0)), "{broken"], r"d\.jsonl:2:2: malformed JSON"),
        ([json.dumps(qa(0, ["a.png"], "<image><image> Q"))], "2 <image> placeholder"),
        ([json.dumps({"conversations": [{"from": "human", "value": "Q"}]})], "no assistant"),
        ([json.dumps({"conversations": [{"from": "robot", "value": "Q"}]})], "turn 1 needs 'from'"),
        (["", "  "], "empty"),
    ],
)
def test_malformed_datasets(tmp_path, lines, match):
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=match):
        read_records(tmp_path / "d.jsonl")


def test_non_utf8_and_non_list_files_are_named(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(json.dumps(qa(0)).encode() + b'\n{"id": "caf\xe9"}\n')  # latin-1 byte
    with pytest.raises(ConfigError, match=r"d\.jsonl:2: not UTF-8 text"):
        read_records(tmp_path / "d.jsonl")
    (tmp_path / "d.json").write_text(json.dumps({"records": [qa(0)]}))
    with pytest.raises(ConfigError, match=r"d\.json must hold a JSON array, not an object"):
        read_records(tmp_path / "d.json")


def test_dataset_skips_and_counts(tmp_path, tiny_lite):
    _, processor = tiny_lite  # a 64 px image is one 121-token tile
    noise_image(64, 64).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_text("not an image")
    records = [
        qa(0, "ok.png", "<image>\nQ?"),
        qa(1, "missing.png", "<image>\nQ?"),
        qa(2, "bad.png", "<image>\nQ?"),
        qa(3, None, "Q " * 400, "A"),  # too long, only text: truncation would drop the answer -> skipped
        qa(4, None, "short question", "answer " * 400),  # too long: truncated, keeps part of the answer
    ]
    dataset = ConversationDataset(read_records(write_jsonl(tmp_path / "d.jsonl", records)), processor, max_length=300)
    samples = [dataset[i] for i in range(len(dataset))]
    assert samples[0] is not None and samples[1] is None and samples[2] is None and samples[3] is None
    assert len(samples[4].input_ids) == 300 and any(label != -100 for label in samples[4].labels)
    counts = dataset.stats.counts
    assert counts["missing media file"] == 1 and counts["unreadable media"] == 1
    assert counts["longer than max_length 300 (skipped)"] == 1 and counts["longer than max_length 300 (truncated)"] == 1
    assert "r1" in dataset.stats.summary()


def test_pack_greedy():
    assert pack_greedy([5, 4, 3, 2, 6], 8) == [[0, 2], [1, 3], [4]]
    with pytest.raises(ValueError):
        pack_greedy([9], 8)


def _samples(processor):
    def chat(question, answer):
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    convs = [
        (chat("<image>How many?", "three"), [noise_image(64, 64, 1)]),
        (chat("Say hi", "hi there"), []),
        (chat("<image>Colour?", "red"), [noise_image(900, 500, 2)]),
    ]
    return [processor.encode_messages(m, imgs) for m, imgs in convs]


def test_packed_rows_match_separate_samples(tiny):
    model, processor = tiny
    samples = _samples(processor)
    cfg = processor.config
    packed = collate_packed([samples], processor.pad_token_id, cfg)
    padded = collate_padded(samples, processor.pad_token_id, cfg)
    assert packed.input_ids.shape[0] == 1 and packed.attention_mask is None
    with torch.no_grad():
        out_packed = model(**packed.model_kwargs("cpu"))
        out_padded = model(**padded.model_kwargs("cpu"))
    torch.testing.assert_close(out_packed.loss, out_padded.loss, rtol=1e-5, atol=1e-5)
    start = 0
    for row, s in enumerate(samples):  # every sample sees only itself: logits equal its own padded row
        n = len(s.input_ids)
        torch.testing.assert_close(
            out_packed.logits[0, start : start + n], out_padded.logits[row, :n], rtol=1e-4, atol=1e-4
        )
        assert packed.position_ids[0, start] == 0
        start += n


def test_padded_batch_labels_and_mask(tiny):
    _, processor = tiny
    samples = _samples(processor)
    batch = collate_padded(samples, processor.pad_token_id, processor.config)
    assert batch.n_label_tokens == sum(sum(label != -100 for label in s.labels) for s in samples)
    assert batch.attention_mask.sum() == sum(len(s.input_ids) for s in samples)
    # each image is its prompt's only image: Dynamic-S2 tiles for both
    tiles = [image_tokens(64, 64, processor.config).vit_tiles, image_tokens(900, 500, processor.config).vit_tiles]
    assert batch.pixel_values.shape[0] == sum(tiles)
    assert batch.image_block_sizes == [image_tokens(64, 64, processor.config).block_size, (3, 4)]


def test_a_truncated_video_sample_keeps_its_video_and_trains(tmp_path):
    """An over-long answer after a video is cut, and the sample still carries its frames into a training step."""
    model, processor = random_pretrained("tiny-lite", seed=0)  # its own copy: this test changes the weights
    encode_mp4(tmp_path / "v.mp4", np.stack([np.asarray(noise_image(64, 64, seed)) for seed in range(4)]), fps=2)
    record = {"id": "v0", "video": "v.mp4", "conversations": [{"from": "human", "value": "<vila/video>\nWhat?"}]}
    record["conversations"].append({"from": "gpt", "value": "answer " * 400})
    records = read_records(write_jsonl(tmp_path / "d.jsonl", [record]))
    full = processor.encode_messages(records[0].messages, videos=records[0].videos)
    video_tokens = sum(t == processor.config.video_token_id for t in full.input_ids)
    max_length = video_tokens + 60
    assert len(full.input_ids) > max_length and full.video_frame_counts == [4]

    dataset = ConversationDataset(records, processor, max_length=max_length)
    sample = dataset[0]
    assert dataset.stats.counts[f"longer than max_length {max_length} (truncated)"] == 1
    assert len(sample.input_ids) == len(sample.labels) == max_length
    assert sample.video_frame_counts == full.video_frame_counts and len(sample.video_tiles) == len(full.video_tiles)
    assert len(sample.videos) == 1 and any(label != IGNORE_INDEX for label in sample.labels)

    batch = collate_padded([sample], processor.pad_token_id, processor.config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    projector_before = [p.detach().clone() for p in model.mm_projector.parameters()]
    loss = model(**batch.model_kwargs("cpu")).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(projector_before, model.mm_projector.parameters()))


def multi(i, image, turns):
    conversations = []
    for k, (question, answer) in enumerate(turns):
        conversations += [{"from": "human", "value": ("<image>\n" if k == 0 else "") + question}]
        conversations += [{"from": "gpt", "value": answer}]
    return {"id": f"m{i}", "image": image, "conversations": conversations}


def test_single_turns_make_one_sample_of_branches_and_drop_the_branches_that_do_not_fit(tmp_path, tiny_lite):
    _, processor = tiny_lite
    noise_image(64, 64).save(tmp_path / "ok.png")
    turns = [("Q1?", "one"), ("Q2?", "two"), ("Q3?", "three " * 30)]
    path = write_jsonl(tmp_path / "m.jsonl", [multi(0, "ok.png", turns), qa(1, "ok.png", "<image>\nQ?")])
    records = read_records(path)
    as_turns = ConversationDataset(records, processor, max_length=1024)[0]
    branched = ConversationDataset(records, processor, max_length=1024, single_turns=True)
    sample, single = branched[0], branched[1]
    assert not as_turns.branches and single.branches == []  # one question: an ordinary sample
    assert len(sample.branches) == 3
    image_id = processor.config.image_token_id
    assert sample.input_ids.count(image_id) == as_turns.input_ids.count(image_id)  # the image once
    answers = [processor.tokenizer.decode([t for t in sample.labels[s:e] if t != -100]) for s, e in sample.branches]
    assert [a.split("<")[0].strip() for a in answers] == [a.strip() for _, a in turns]
    # a length that holds the first two branches but not the third: the third is dropped and counted
    short = ConversationDataset(records, processor, max_length=sample.branches[1][1] + 5, single_turns=True)
    cut = short[0]
    assert cut.branches == sample.branches[:2] and len(cut.input_ids) == sample.branches[1][1]
    assert list(short.stats.counts) == [f"longer than max_length {short.max_length} (branches dropped)"]
    tiny = ConversationDataset(records, processor, max_length=sample.branches[0][1] - 1, single_turns=True)
    assert tiny[0] is None  # not even one branch fits


def test_media_inline_asks_a_fraction_of_the_records_in_the_form_without_the_newline(tmp_path, tiny_lite):
    _, processor = tiny_lite
    noise_image(64, 64).save(tmp_path / "ok.png")
    records = read_records(write_jsonl(tmp_path / "d.jsonl", [qa(i, "ok.png", "<image>\nWhat?") for i in range(40)]))
    first = records[0]
    newline = processor.encode_messages(first.messages, first.images).input_ids
    asked_without_placeholder = [{"role": "user", "content": "What?"}, first.messages[1]]  # as `--image` asks
    inline = processor.encode_messages(asked_without_placeholder, first.images)
    assert newline != inline.input_ids
    forms = {0.0: [], 0.5: [], 1.0: []}
    for fraction, ids in forms.items():
        dataset = ConversationDataset(records, processor, max_length=1024, media_inline=fraction)
        ids.extend(dataset[i].input_ids for i in range(len(records)))
    assert all(x == newline for x in forms[0.0]) and all(x == inline.input_ids for x in forms[1.0])
    half = sum(x == inline.input_ids for x in forms[0.5])
    assert 10 <= half <= 30 and all(x in (newline, inline.input_ids) for x in forms[0.5])
    again = ConversationDataset(records, processor, max_length=1024, media_inline=0.5)
    assert [again[i].input_ids for i in range(len(records))] == forms[0.5]  # the same records every time
    with pytest.raises(ValueError, match="media_inline"):
        ConversationDataset(records, processor, max_length=1024, media_inline=1.5)
