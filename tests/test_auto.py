"""`import nvila` registers NVILA with transformers' Auto classes without importing torch itself, whatever order the
application imports transformers in (`nvila.auto`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

from nvila.models.nvila.configuration_pretrained import CONFIG_CLASSES
from nvila.models.nvila.modeling_nvila import MODEL_CLASSES
from nvila.models.nvila.processing_nvila import NVILAProcessor

CHECK = """
import json, sys
import nvila
torch_after_nvila = "torch" in sys.modules
{first}
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
print(json.dumps({{
    "torch_after_nvila": torch_after_nvila,
    "configs": sorted(t for t in ("nvila", "nvila_lite", "llava_llama") if t in CONFIG_MAPPING),
    "models": sorted(c.__name__ for c in AutoModelForImageTextToText._model_mapping._extra_content.values()),
    "processors": sorted({{c.__name__ for c in PROCESSOR_MAPPING._extra_content.values()}}),
}}))
"""


def test_every_model_type_has_its_config_model_and_processor_here():
    for model_type, config_class in CONFIG_CLASSES.items():
        assert AutoConfig.for_model(model_type).__class__ is config_class
        for auto in (AutoModel, AutoModelForImageTextToText):
            assert auto._model_mapping[config_class] is MODEL_CLASSES[model_type]
        assert PROCESSOR_MAPPING[config_class] is NVILAProcessor


@pytest.mark.slow  # fresh interpreters (~7 s each); `make test-slow` and CI run it
@pytest.mark.parametrize(
    "first",
    [
        "from transformers import pipeline",
        "import peft",
        "from nvila.models.nvila.configuration_pretrained import CONFIG_CLASSES",
    ],
)
def test_registration_waits_for_the_import_that_needs_it(first):
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(first=first)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {
        "torch_after_nvila": False,
        "configs": ["llava_llama", "nvila", "nvila_lite"],
        "models": ["LlavaLlamaModel", "NVILAForConditionalGeneration", "NVILALiteForConditionalGeneration"],
        "processors": ["NVILAProcessor"],
    }


def test_a_registration_that_fails_is_a_warning_not_an_error(monkeypatch, caplog):
    import nvila.auto

    def broken() -> None:
        raise RuntimeError("no such Auto class")

    monkeypatch.setattr(nvila.auto, "register", broken)
    monkeypatch.setitem(nvila.auto._state, "registered", False)
    nvila.auto._register_once()
    assert "could not register NVILA with transformers' Auto classes (no such Auto class)" in caplog.text
    assert nvila.auto._state["registered"]  # tried once, not on every import
