"""`nvila quantize` end to end on a tiny random model: files, the normal loader, generation, drift, re-saving."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from nvila.checkpoint import save
from nvila.generation import GenerationOptions
from nvila.loader import load
from nvila.ops.quantized import AWQLinear, W8A8Linear
from nvila.pipeline import NVILAPipeline, generate_steps

from ..conftest import assert_modes_follow_umask, noise_image
from .conftest import GROUP_SIZE


def tensor_dtypes(path) -> dict[str, torch.dtype]:
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key).dtype for key in f.keys()}  # noqa: SIM118 (safe_open is not iterable)


def test_files_hold_autoawq_and_compressed_tensors_layouts(quantized):
    out, _ = quantized
    assert_modes_follow_umask(out)
    llm_config = json.loads((out / "llm" / "config.json").read_text())
    assert llm_config["quantization_config"] == {
        "quant_method": "awq", "bits": 4, "group_size": GROUP_SIZE, "zero_point": True, "version": "gemm",
        "modules_to_not_convert": None,
    }  # fmt: skip
    top = json.loads((out / "config.json").read_text())
    assert top["llm_cfg"]["quantization_config"] == llm_config["quantization_config"]
    tower_config = json.loads((out / "vision_tower" / "config.json").read_text())["quantization_config"]
    assert tower_config["quant_method"] == "compressed-tensors" and tower_config["format"] == "int-quantized"
    llm = tensor_dtypes(out / "llm" / "model.safetensors")
    prefix = "model.layers.0.self_attn.q_proj."
    assert {k: llm[prefix + k] for k in ("qweight", "qzeros", "scales", "bias")} == {
        "qweight": torch.int32, "qzeros": torch.int32, "scales": torch.float16, "bias": torch.bfloat16}  # fmt: skip
    assert prefix + "weight" not in llm and llm["lm_head.weight"] == torch.bfloat16
    tower = tensor_dtypes(out / "vision_tower" / "model.safetensors")
    fc1 = "vision_model.encoder.layers.0.mlp.fc1."
    assert (tower[fc1 + "weight"], tower[fc1 + "weight_scale"]) == (torch.int8, torch.float32)


def test_the_normal_loader_builds_quantized_layers_and_generation_stays_close(quantized, float_checkpoint):
    out, _ = quantized
    model, processor = load(out)
    layer = model.llm.model.layers[1]
    assert isinstance(layer.mlp.down_proj, AWQLinear) and isinstance(layer.self_attn.q_proj, AWQLinear)
    assert isinstance(model.vision_tower.model.encoder.layers[0].self_attn.out_proj, W8A8Linear)
    assert type(model.llm.lm_head) is torch.nn.Linear

    reference, _ = load(float_checkpoint)
    image = noise_image(120, 90, seed=4)
    inputs = processor(["Describe the image."], [[image]]).to_model_kwargs()
    with torch.no_grad():
        p = reference(**inputs).logits.float().log_softmax(-1)
        q = model(**inputs).logits.float().log_softmax(-1)
    kl = float((p.exp() * (p - q)).sum(-1).mean())
    assert kl < 0.05  # a different random model: ~9
    assert float((p.argmax(-1) == q.argmax(-1)).float().mean()) > 0.8

    pipe = NVILAPipeline(model, processor)
    text = pipe.generate("Describe the image.", [image], GenerationOptions(max_new_tokens=6))
    assert isinstance(text, str)
    tokens = list(generate_steps(model, inputs, GenerationOptions(max_new_tokens=6), [], pad_token_id=0))
    assert len(tokens) == 6 and tokens[0].shape == (1,)


def test_report_has_drift_sizes_and_search_results(quantized):
    out, report = quantized
    assert json.loads((out / "quantization.json").read_text()) == report
    assert report["calibration"]["search_samples"] == 3 and report["calibration"]["heldout_samples"] == 2
    drift = report["drift"]
    assert 0 <= drift["kl_mean"] < 0.05 and drift["top1_agreement"] > 0.8  # a different random model: ~9 and 0
    assert drift["positions"] > drift["answer_tokens"] > 0
    assert drift["perplexity_before"] > 1 and drift["perplexity_after"] > 1
    sizes = report["sizes"]
    assert all(sizes["after"][part] < sizes["before"][part] for part in ("llm", "vision_tower"))
    assert sizes["after"]["mm_projector"] == sizes["before"]["mm_projector"]  # the projector stays bf16
    for groups in report["llm"]["layers"].values():
        assert set(groups) == {"qkv", "o", "gate_up", "down"}
        assert all(g["mse_awq"] <= g["mse_rtn"] for g in groups.values())
    assert report["vision_tower"] == {"scheme": "w8a8", "smooth_alpha": 0.5, "linears": 18}


def test_a_loaded_quantized_model_saves_and_reloads_unchanged(quantized, tmp_path):
    out, _ = quantized
    model, processor = load(out)
    again = save(model, processor.tokenizer, tmp_path / "again")
    assert json.loads((again / "llm" / "config.json").read_text())["quantization_config"]["group_size"] == GROUP_SIZE
    reloaded, _ = load(again)
    for key, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], tensor), key
