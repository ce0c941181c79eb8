"""Official-layout checkpoints: round trip, strict validation, refusal of pickle, atomic saving."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import nvila
from nvila.checkpoint import save
from nvila.errors import CheckpointError
from tests.conftest import assert_modes_follow_umask, noise_image


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny):
    model, processor = tiny
    return save(model, processor.tokenizer, tmp_path_factory.mktemp("ckpt") / "tiny-ckpt")


def test_layout_and_official_names(saved):
    assert_modes_follow_umask(saved)  # readable by other users and services, as `cp` would leave it
    top = json.loads((saved / "config.json").read_text())
    assert top["image_aspect_ratio"] == "dynamic_s2" and top["mm_projector"] == "mlp_downsample"
    assert top["s2_scales"] == "112,224,336" and top["mm_hidden_size"] == 96
    tower = load_file(saved / "vision_tower" / "model.safetensors")
    assert all(k.startswith("vision_model.") for k in tower)
    assert "vision_model.embeddings.patch_embedding.weight" in tower
    assert set(load_file(saved / "mm_projector" / "model.safetensors")) == {
        f"layers.{i}.{p}" for i in (1, 2, 4) for p in ("weight", "bias")
    }
    llm = load_file(saved / "llm" / "model.safetensors")
    assert "lm_head.weight" in llm and "model.embed_tokens.weight" in llm
    assert all(t.dtype == torch.bfloat16 for t in llm.values())
    tok_cfg = json.loads((saved / "llm" / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "Qwen2Tokenizer"


def test_round_trip_gives_identical_logits(saved, tiny):
    model, processor = tiny
    reloaded, reprocessor = nvila.load(saved)
    image = noise_image(700, 400)
    a, b = processor("Describe", [image]), reprocessor("Describe", [image])
    assert torch.equal(a.input_ids, b.input_ids)
    # saving rounds weights to bf16: compare against the original model rounded the same way
    rounded = nvila.build_model(model.nvila_config)
    rounded.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in model.state_dict().items()})
    with torch.no_grad():
        expected = rounded(**a.to_model_kwargs()).logits
        got = reloaded(**b.to_model_kwargs()).logits
    assert torch.equal(expected, got)
    resaved = save(reloaded, reprocessor.tokenizer, saved.parent / "again")
    for part in ("llm", "vision_tower", "mm_projector"):
        first, second = load_file(saved / part / "model.safetensors"), load_file(resaved / part / "model.safetensors")
        assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _copy(saved, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(saved, target)
    return target


def _edit_part(folder, part, edit):
    path = folder / part / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_missing_tensor_is_named(saved, tmp_path):
    ckpt = _copy(saved, tmp_path)
    _edit_part(ckpt, "mm_projector", lambda t: t.pop("layers.2.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensors: mm_projector\.layers\.2\.weight"):
        nvila.load(ckpt)


def test_shape_mismatch_is_named(saved, tmp_path):
    ckpt = _copy(saved, tmp_path)
    _edit_part(ckpt, "llm", lambda t: t.update({"model.norm.weight": torch.zeros(7, dtype=torch.bfloat16)}))
    with pytest.raises(CheckpointError, match=r"model\.norm\.weight in llm/ is \[7\], expected \[32\]"):
        nvila.load(ckpt)


def test_unexpected_tensor_is_named(saved, tmp_path):
    ckpt = _copy(saved, tmp_path)
    _edit_part(ckpt, "vision_tower", lambda t: t.update({"vision_model.extra": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="unexpected tensors: vision_tower.model.extra"):
        nvila.load(ckpt)


def test_pickle_weights_are_refused(saved, tmp_path):
    ckpt = _copy(saved, tmp_path)
    (ckpt / "mm_projector" / "model.safetensors").unlink()
    (ckpt / "mm_projector" / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(CheckpointError, match="pickle"):
        nvila.load(ckpt)


@pytest.mark.parametrize("damage", ["no_folder", "bad_json", "no_llm", "corrupt_tensors", "no_tokenizer"])
def test_broken_checkpoints(saved, tmp_path, damage):
    ckpt = _copy(saved, tmp_path)
    if damage == "no_folder":
        ckpt = tmp_path / "nowhere"
    elif damage == "bad_json":
        (ckpt / "config.json").write_text("{not json")
    elif damage == "no_llm":
        shutil.rmtree(ckpt / "llm")
    elif damage == "corrupt_tensors":
        (ckpt / "llm" / "model.safetensors").write_bytes(b"\x00" * 64)
    else:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            (ckpt / "llm" / f).unlink()
    with pytest.raises(CheckpointError):
        nvila.load(ckpt)


def test_malformed_config_names_the_file_line_and_column(saved, tmp_path):
    ckpt = _copy(saved, tmp_path)
    config = ckpt / "llm" / "config.json"
    config.write_text('{"hidden_size": 32,\n "vocab_size": }')
    with pytest.raises(CheckpointError, match=r"llm/config\.json:2:16: malformed JSON \(Expecting value\)"):
        nvila.load(ckpt)
    config.write_text("[32]")
    with pytest.raises(CheckpointError, match=r"llm/config\.json must hold a JSON object, not an array"):
        nvila.load(ckpt)


@pytest.mark.parametrize(
    ("part", "key", "value", "message"),
    [
        ("llm", "hidden_size", "x", r"text\.hidden_size must be an integer >= 1, got 'x'"),
        ("llm", "num_attention_heads", None, r"text\.num_attention_heads must be an integer >= 1, got None"),
        ("vision_tower", "patch_size", 0, r"vision\.patch_size must be an integer >= 1, got 0"),
        ("", "num_video_frames", "8", r"num_video_frames must be an integer >= 1, got '8'"),
        ("", "s2_scales", "448,x", r"wrong type"),
        ("", "fps", "fast", r"fps must be a number"),
    ],
)
def test_wrongly_typed_config_values_are_named(saved, tmp_path, part, key, value, message):
    ckpt = _copy(saved, tmp_path)
    config = ckpt / part / "config.json"
    data = json.loads(config.read_text())
    data[key] = value
    config.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=message):
        nvila.load(ckpt)


def test_save_refuses_to_overwrite_and_leaves_nothing_half_written(tiny, tmp_path):
    model, processor = tiny
    target = save(model, processor.tokenizer, tmp_path / "out")
    with pytest.raises(CheckpointError, match="already exists"):
        save(model, processor.tokenizer, target)

    class Exploding:
        def save_pretrained(self, *_):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save(model, Exploding(), tmp_path / "never")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_tied_embeddings_round_trip(tmp_path):
    cfg = nvila.from_name("tiny-lite")
    cfg.text.tie_word_embeddings = True
    model, processor = nvila.random_pretrained(cfg)
    ckpt = save(model, processor.tokenizer, tmp_path / "tied")
    assert "lm_head.weight" not in load_file(ckpt / "llm" / "model.safetensors")
    reloaded, _ = nvila.load(ckpt)
    assert reloaded.llm.lm_head.weight.data_ptr() == reloaded.llm.get_input_embeddings().weight.data_ptr()


def test_video_settings_round_trip_with_temporal_pooling_in_the_official_format(tmp_path):
    cfg = nvila.from_name("tiny").replace(num_video_frames=6, video_pool_size=3, fps=2.0)
    model, processor = nvila.random_pretrained(cfg)
    ckpt = save(model, processor.tokenizer, tmp_path / "pooled")
    top = json.loads((ckpt / "config.json").read_text())
    assert top["video_encoder"] == {"_target_": "llava.model.encoders.TSPVideoEncoder", "pool_sizes": [[3, 1, 1]]}
    reloaded, _ = nvila.load(ckpt)
    assert (
        reloaded.nvila_config.num_video_frames,
        reloaded.nvila_config.video_pool_size,
        reloaded.nvila_config.fps,
    ) == (6, 3, 2.0)

    top["video_encoder"]["pool_sizes"] = [[1, 2, 2]]  # spatial pooling: not implemented here
    (ckpt / "config.json").write_text(json.dumps(top))
    with pytest.raises(CheckpointError, match="only one \\[t, 1, 1\\] temporal pool"):
        nvila.load(ckpt)


def test_reinit_names_only_known_parts(saved):
    with pytest.raises(nvila.ConfigError, match="unknown checkpoint parts \\['projector'\\]"):
        nvila.load(saved, reinit=["projector"])
