"""Match the official implementation's outputs on its own tiny checkpoints (../shared/parity)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import nvila
from nvila.generation import GenerationOptions
from nvila.pipeline import generate_steps
from tests.conftest import PARITY_DIR

pytestmark = pytest.mark.skipif(not PARITY_DIR.is_dir(), reason="official test vectors (../shared/parity) not present")
VARIANTS = ["nvila_s2_2x2", "nvila_lite_dynamic_3x3"]
ATOL = 1e-4


@pytest.fixture(scope="module", params=VARIANTS)
def case(request):
    root = PARITY_DIR / request.param
    reference = json.loads((PARITY_DIR / f"{request.param}.reference.json").read_text())
    arrays = dict(np.load(PARITY_DIR / f"{request.param}.reference.npz"))
    model, processor = nvila.load(root)
    inputs = processor("Describe this image in detail.", [PARITY_DIR / "test_image.png"])
    return reference, arrays, model, processor, inputs


def test_prompt_and_pixels(case):
    reference, arrays, _, processor, inputs = case
    # the official prompt holds one id per placeholder; ours expands it to the visual tokens + media end
    counts = iter(reference["visual_tokens_from_projector"])
    expected = []
    for token in reference["input_ids"]:
        expected += (
            [token] * next(counts) + processor.media_end_ids if token == reference["image_token_id"] else [token]
        )
    assert inputs.input_ids[0].tolist() == expected
    assert inputs.input_ids.shape[1] == reference["llm_sequence_length"]
    np.testing.assert_allclose(inputs.pixel_values.numpy(), arrays["pixel_values"], rtol=0, atol=ATOL)
    blocks = [list(b) for b in arrays["block_sizes"]]
    assert [list(b) for b in inputs.image_block_sizes if b is not None] == blocks


def test_tower_projector_and_embeddings(case):
    _, arrays, model, _, inputs = case
    with torch.no_grad():
        features = model.vision_tower(inputs.pixel_values)
        projected = model.mm_projector(torch.from_numpy(arrays["projector_input"]))
        embeds = model.embed(inputs.input_ids, inputs.pixel_values, inputs.image_block_sizes)
    np.testing.assert_allclose(features.numpy(), arrays["vision_features"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(projected.numpy(), arrays["projector_output"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(embeds.numpy(), arrays["inputs_embeds"], rtol=0, atol=ATOL)


def test_logits_and_greedy_tokens(case):
    reference, arrays, model, processor, inputs = case
    with torch.no_grad():
        logits = model(**inputs.to_model_kwargs()).logits
    np.testing.assert_allclose(logits.numpy(), arrays["logits"], rtol=0, atol=ATOL)
    steps = generate_steps(model, inputs, GenerationOptions(max_new_tokens=8), processor.eos_token_ids, 0)
    assert [int(t) for t in steps] == reference["generated_ids"]
    assert processor.eos_token_ids == reference["stop_token_ids"]


# ---- the same through transformers: the Auto classes, the converted HF folder, its remote code ---------------
REMOTE_CODE_SCRIPT = """
import json, sys
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
folder, image = sys.argv[1], sys.argv[2]
model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
inputs = processor(text="Describe this image in detail.", images=[image])
output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
print(json.dumps({"tokens": output[0, inputs["input_ids"].shape[1]:].tolist(), "class": type(model).__name__}))
"""


def auto_greedy_tokens(folder) -> list[int]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(folder)
    inputs = processor(text="Describe this image in detail.", images=[PARITY_DIR / "test_image.png"])
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    return output[0, inputs["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_auto_classes_and_generate_give_the_official_tokens(variant, tmp_path):
    from nvila.convert.to_hf import to_hf

    expected = json.loads((PARITY_DIR / f"{variant}.reference.json").read_text())["generated_ids"]
    assert auto_greedy_tokens(PARITY_DIR / variant) == expected
    converted = to_hf(PARITY_DIR / variant, tmp_path / "hf").path  # loaded as it is: no convert step back
    assert auto_greedy_tokens(converted) == expected


@pytest.mark.slow  # a fresh interpreter per variant (~10 s each); `make test-slow` and CI run it
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_converted_folder_loads_by_its_remote_code_without_importing_nvila(variant, tmp_path):
    from nvila.convert.to_hf import to_hf

    reference = json.loads((PARITY_DIR / f"{variant}.reference.json").read_text())
    converted = to_hf(PARITY_DIR / variant, tmp_path / "hf").path
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    script = [sys.executable, "-c", REMOTE_CODE_SCRIPT, str(converted), str(PARITY_DIR / "test_image.png")]
    done = subprocess.run(script, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tokens"] == reference["generated_ids"]
    assert result["class"] == (
        "NVILALiteForConditionalGeneration" if "lite" in variant else "NVILAForConditionalGeneration"
    )
