"""The reading losses score a head's own attention and output, and train with the model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from nvila.cli import main
from nvila.data.collate import collate_packed, collate_padded
from nvila.data.dataset import ConversationDataset
from nvila.data.records import read_records
from nvila.errors import ConfigError
from nvila.factory import random_pretrained
from nvila.models.nvila.configuration_nvila import from_name
from nvila.train.reading_loss import ReadingLoss, mass_loss, place_answers, place_columns
from nvila.train.recipe import ReadingSpec, load_recipe
from nvila.train.scene_targets import SceneTargetDataset, batch_targets


def collated(scenes: list, processor, packed: bool) -> tuple:
    """(batch, layout) of four scene samples: two packed rows of two, or four padded rows."""
    samples, cfg = [s.sample for s in scenes], processor.config
    if packed:
        batch = collate_packed([samples[:2], samples[2:]], processor.pad_token_id, cfg)
        first = [len(samples[0].input_ids), len(samples[2].input_ids)]
        return batch, [(0, 0), (0, first[0]), (1, 0), (1, first[1])]
    return collate_padded(samples, processor.pad_token_id, cfg), [(row, 0) for row in range(len(samples))]


def placed_batch(model, processor, reading_data, packed: bool, single_turns: bool, spell: bool = False):
    """(model inputs, placed answers, word targets) of the reading records in one batch."""
    records = read_records(reading_data)
    dataset = ConversationDataset(records, processor, max_length=1024, single_turns=single_turns)
    items = SceneTargetDataset(dataset, processor, words=True, answers=True, spell=spell)
    scenes = [items[i] for i in range(len(items)) if items[i].answers][:4]
    batch, layout = collated(scenes, processor, packed)
    cfg = processor.config
    words = batch_targets(batch.input_ids, scenes, cfg.image_token_id)
    return batch.model_kwargs("cpu"), place_answers(scenes, layout, cfg.image_token_id), words


@pytest.mark.parametrize(
    ("packed", "single_turns", "spell"), [(False, False, False), (True, True, False), (True, False, True)]
)
def test_the_taps_read_the_heads_own_attention_and_output(tiny_s2_model, reading_data, packed, single_turns, spell):
    model, processor = tiny_s2_model
    model.eval()
    kwargs, answers, _ = placed_batch(model, processor, reading_data, packed, single_turns, spell)
    assert len(answers) >= 6 and any(a.digits.any() for a in answers)
    assert spell == any(a.head == 1 for a in answers)
    spec = ReadingSpec(number=1.0, address=1.0, copy=1.0, layer=1, spell=spell)
    reading = ReadingLoss(model, spec)
    attn = model.llm.model.layers[1].self_attn
    values = []
    hook = attn.v_proj.register_forward_hook(lambda module, args, out: values.append(out))
    model.llm.set_attn_implementation("eager")  # attention weights come back from eager attention only
    try:
        with torch.no_grad():
            out = model(**kwargs, output_attentions=True)
            total, metrics = reading(answers)
    finally:
        model.llm.set_attn_implementation("sdpa")
        hook.remove()
        reading.remove()
    for a in answers:  # softmax over the chosen keys = the model's attention there, renormalised
        for tap, layer, head, keys in ((reading.address, 1, a.head, a.image), (reading.before, 0, 0, a.seen)):
            weights = out.attentions[layer][a.row, head, a.at, keys]
            torch.testing.assert_close(torch.softmax(tap.logits(head, a.row, a.at, keys), 0), weights / weights.sum())
        seen_by_query = out.attentions[0][a.row, 0, a.at] > 0
        assert seen_by_query[a.seen].all() and int(seen_by_query.sum()) == len(a.seen)  # exactly what it sees
    a = next(a for a in answers if a.head == int(spell))
    d, heads = attn.head_dim, attn.o_proj.in_features // attn.head_dim
    group = a.head // attn.num_key_value_groups
    v = values[0][a.row, a.image].view(len(a.image), -1, d)[:, group]  # the forward pass's own values, the head's
    weights = torch.softmax(reading.address.logits(a.head, a.row, a.at, a.image), 0)
    mixed = torch.zeros(heads, d)
    mixed[a.head] = weights @ v  # the head's output, the other heads silent
    torch.testing.assert_close(reading.address.output(a.head, a.row, a.image, weights), attn.o_proj(mixed.flatten()))
    expected = spec.number * metrics["reading_number_loss"] + spec.address * metrics["reading_address_loss"]
    assert math.isclose(float(total), expected + spec.copy * metrics["reading_copy_loss"], rel_tol=1e-5)
    assert all(0 <= metrics[f"reading_{k}_accuracy"] <= 1 for k in ("number", "address", "copy"))


@pytest.mark.parametrize("packed", [False, True])
def test_the_column_loss_scores_the_last_heads_attention_from_each_label_to_its_value(
    tiny_s2_model, reading_data, packed
):
    model, processor = tiny_s2_model
    model.eval()
    records = read_records(reading_data)
    dataset = ConversationDataset(records, processor, max_length=1024)
    items = SceneTargetDataset(dataset, processor, words=False, columns=True)
    scenes = [items[i] for i in range(len(items)) if items[i].columns][:4]
    batch, layout = collated(scenes, processor, packed)
    cfg = processor.config
    columns = place_columns(scenes, layout, cfg.image_token_id)
    assert len(columns) == sum(len(s.columns) for s in scenes) >= 12
    reading = ReadingLoss(model, ReadingSpec(column=2.0, layer=1))
    model.llm.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(**batch.model_kwargs("cpu"), output_attentions=True)
            total, metrics = reading([], None, columns)
    finally:
        model.llm.set_attn_implementation("sdpa")
        reading.remove()
    head, losses = model.llm.config.num_attention_heads - 1, []
    for c in columns:
        assert (batch.input_ids[c.row, c.keys] == cfg.image_token_id).all() and c.keys[-1] == c.at
        weights = out.attentions[0][c.row, head, c.at, c.keys]  # the model's own attention, renormalised
        torch.testing.assert_close(
            torch.softmax(reading.before.logits(head, c.row, c.at, c.keys), 0), weights / weights.sum()
        )
        losses.append(-math.log(float(weights[c.value].sum() / weights.sum())))
    assert math.isclose(metrics["reading_column_loss"], sum(losses) / len(losses), rel_tol=1e-4)
    assert math.isclose(float(total), 2.0 * metrics["reading_column_loss"], rel_tol=1e-5)


@pytest.mark.parametrize("packed", [False, True])
def test_the_words_loss_names_the_words_from_the_residual_entering_the_layer(tiny_s2_model, reading_data, packed):
    model, processor = tiny_s2_model
    model.eval()
    kwargs, answers, words = placed_batch(model, processor, reading_data, packed, single_turns=False)
    assert words.positions.numel() > 50
    reading = ReadingLoss(model, ReadingSpec(words=2.0, layer=1))
    try:
        with torch.no_grad():
            out = model(**kwargs, output_hidden_states=True)  # hidden_states[1]: what enters layer 1
            total, metrics = reading([], words)
            assert reading(answers) is None  # no answer loss asked for, and no words given
    finally:
        reading.remove()
    llm = model.llm
    with torch.no_grad():
        logits = llm.lm_head(llm.model.norm(out.hidden_states[1].flatten(0, 1)[words.positions]))
    expected = torch.nn.functional.cross_entropy(logits, words.token_ids)
    assert math.isclose(metrics["reading_words_loss"], float(expected), rel_tol=1e-5)
    assert math.isclose(float(total), 2.0 * float(expected), rel_tol=1e-5)
    hits = float((logits.argmax(-1) == words.token_ids).float().mean())
    assert math.isclose(metrics["reading_words_accuracy"], hits, rel_tol=1e-6)
    assert not any(k.startswith(("reading_copy", "reading_address", "reading_number")) for k in metrics)


def test_mass_loss_is_minus_log_the_attention_on_the_targets():
    logits = torch.tensor([0.0, 1.0, 2.0])
    on = torch.tensor([True, False, True])
    probability = torch.softmax(logits, 0)
    assert math.isclose(float(mass_loss(logits, on)), -math.log(probability[0] + probability[2]), rel_tol=1e-6)


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("packing", "spell"), [(False, False), (True, False), (False, True)])
def test_a_run_with_the_reading_losses_lowers_them(make_recipe, reading_data, packing, spell):
    reading = {"number": 1.0, "address": 1.0, "copy": 1.0, "layer": 1}
    if spell:  # and the column loss
        reading.update(spell=True, question_words=True, column=1.0)
    path = make_recipe(
        "reads",
        max_steps=30,
        reading=reading,
        optim__lr=1e-2,
        data__train=str(reading_data),
        data__packing=packing,
        data__max_length=1024,
    )
    assert main(["train", "--recipe", path]) == 0
    logged = rows(Path(path).parent / "reads")
    assert len(logged) == 30
    for name in ("number", "address", "copy", *(["column"] if spell else [])):  # charts alone: no line number
        curve = [row[f"reading_{name}_loss"] for row in logged if f"reading_{name}_loss" in row]
        assert len(curve) >= 20 and all(math.isfinite(x) for x in curve)
        assert sum(curve[-3:]) < 0.9 * sum(curve[:3]), (name, curve)


def test_a_run_with_the_words_loss_alone_lowers_it_and_places_no_answers(make_recipe, reading_data):
    path = make_recipe(
        "names",
        max_steps=30,
        reading={"words": 1.0},
        optim__lr=1e-2,
        data__train=str(reading_data),
        data__max_length=1024,
    )
    assert main(["train", "--recipe", path]) == 0
    logged = rows(Path(path).parent / "names")
    curve = [row["reading_words_loss"] for row in logged]
    assert len(curve) == 30 and sum(curve[-3:]) < 0.8 * sum(curve[:3]), curve
    assert not any("reading_copy_loss" in row or "word_loss" in row for row in logged)


@pytest.mark.parametrize(
    "changes",
    [
        {"reading": {"address": -1.0}},
        {"reading": {"words": -1.0}},
        {"reading": {"copy": 1.0}, "objective": "vision_heads"},
        {"reading": {"number": 1.0, "layer": 0}},
        {"reading": {"address": 1.0, "where": "middle"}},
    ],
)
def test_bad_reading_settings_are_refused(make_recipe, changes):
    with pytest.raises(ConfigError, match="reading"):
        load_recipe(make_recipe("bad", **changes))


def test_a_layer_past_the_llm_is_refused(tiny_s2_model):
    model, _ = tiny_s2_model
    with pytest.raises(ConfigError, match="reading.layer"):
        ReadingLoss(model, ReadingSpec(address=1.0, layer=len(model.llm.model.layers)))


def test_spelling_with_one_head_is_refused():
    cfg = from_name("tiny").with_overrides({"text": {"num_attention_heads": 1, "num_key_value_heads": 1}})
    model, _ = random_pretrained(cfg)
    with pytest.raises(ConfigError, match="reading.spell"):
        ReadingLoss(model, ReadingSpec(address=1.0, layer=1, spell=True))
