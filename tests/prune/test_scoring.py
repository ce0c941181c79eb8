"""DeltaLoss scores: equal to a direct per-example computation, resumable, refused for mismatched tokenizers."""

from __future__ import annotations

import json

import pytest
import torch

import nvila
from nvila.data.records import read_records
from nvila.errors import ConfigError
from nvila.factory import random_pretrained, sample_tokenizer
from nvila.models.nvila.image_processing_nvila import normalize_tiles
from nvila.prune import PruneSettings, ScoreFile, prune, score_deltaloss
from nvila.prune import scoring as scoring_module

from ..finetune.conftest import tiny_config

HEADER = {"large": "L", "small": "S"}


def direct_logprob(model, processor, record) -> float:
    """Plain loop: one record, full logits, log-softmax, add the log-prob of every answer (labelled) token."""
    sample = processor.encode_messages(record.messages, record.images)
    ids = torch.tensor([sample.input_ids])
    pixels = normalize_tiles(sample.tiles, model.nvila_config)
    with torch.no_grad():
        logp = model(input_ids=ids, pixel_values=pixels, image_block_sizes=sample.block_sizes).logits[0].log_softmax(-1)
    return sum(float(logp[t - 1, token]) for t, token in enumerate(sample.labels) if t > 0 and token != -100)


@pytest.fixture(scope="module")
def loaded(model_pair):
    return tuple(nvila.load(path) for path in model_pair)


def test_deltaloss_equals_a_direct_per_example_computation(loaded, colour_data, tmp_path):
    large, small = loaded
    records = read_records(colour_data)
    rows = score_deltaloss(records, large, small, ScoreFile(tmp_path / "s.jsonl", HEADER), batch_size=5)
    assert len(rows) == len(records)
    scores = []
    for record in records:
        lp_large, lp_small = direct_logprob(*large, record), direct_logprob(*small, record)
        row = rows[record.id]
        assert row["logp_large"] == pytest.approx(lp_large, abs=2e-4)
        assert row["logp_small"] == pytest.approx(lp_small, abs=2e-4)
        assert row["score"] == pytest.approx(lp_large - lp_small, abs=4e-4)  # log p_large - log p_small
        assert row["tokens"] == sum(1 for t in large[1].encode_messages(record.messages, record.images).labels[1:]
                                    if t != -100)  # fmt: skip
        scores.append(row["score"])
    assert max(scores) - min(scores) > 0.1  # the scores tell records apart


def test_score_file_resumes_and_skips_scored_ids(loaded, colour_data, tmp_path, monkeypatch):
    large, small = loaded
    records = read_records(colour_data)
    path = tmp_path / "scores.jsonl"
    file = ScoreFile(path, HEADER)
    file.append([{"id": "c0", "source": "names", "score": 123.0}])  # a score from an earlier, interrupted run
    with path.open("a") as f:
        f.write('{"id": "c1", "sco')  # a line cut short by a kill
    rows = score_deltaloss(records, large, small, file, batch_size=4)
    assert rows["c0"]["score"] == 123.0  # kept, not recomputed
    assert rows["c1"]["score"] is not None and rows["c1"]["score"] != 123.0
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "nvila-deltaloss/1"
    assert sorted(json.loads(line)["id"] for line in lines[1:]) == sorted(r.id for r in records)  # each id once

    def fail(*args, **kwargs):
        raise AssertionError("a scored id was scored again")

    monkeypatch.setattr(scoring_module, "answer_logprobs", fail)
    again = score_deltaloss(records, large, small, file, batch_size=4)
    assert again == rows
    with pytest.raises(ConfigError, match="scores of other models"):
        ScoreFile(path, {"large": "other", "small": "S"}).read()


def test_models_with_different_tokenizers_are_refused(model_pair, colour_data, tmp_path):
    model, processor = random_pretrained(tiny_config(), tokenizer=sample_tokenizer(400))
    other = nvila.save(model, processor.tokenizer, tmp_path / "other-tokenizer")
    settings = PruneSettings(data=str(colour_data), large=str(model_pair[0]), small=str(other), device="cpu")
    with pytest.raises(ConfigError, match=r"different tokenizers \(\d+ vs \d+ tokens"):
        prune(settings)
