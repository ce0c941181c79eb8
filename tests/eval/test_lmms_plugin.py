"""The lmms-eval plugin against lmms-eval's real `lmms` base class, `Instance` and model registry, on a tiny model.

lmms-eval is installed with --no-deps next to the `nvila[lmms]` extra (`make setup`; see docs/evaluation.md).
Without it these tests skip. tests/eval/test_lmms_run.py runs lmms-eval's evaluator itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nvila.generation import GenerationOptions

try:
    from lmms_eval.api.instance import Instance
    from lmms_eval.api.model import lmms
    from lmms_eval.models.registry_v2 import ModelRegistryV2
except ImportError as e:  # lmms-eval, or a module its base class imports, is missing
    pytest.skip(
        f"lmms-eval's model API cannot be imported ({e}); install it with "
        "pip install -e '.[lmms]' && pip install --no-deps lmms-eval==0.7.3",
        allow_module_level=True,
    )

from nvila.eval.lmms_plugin import NVILA, manifest  # noqa: E402


@pytest.fixture(scope="module")
def model(checkpoint):
    # the way lmms-eval's evaluator builds a model from --model_args (it always passes --batch_size, default 1)
    evaluator_args = {"batch_size": 1, "max_batch_size": None, "device": "cpu"}
    lm = NVILA.create_from_arg_string(f"pretrained={checkpoint},batch_size=2", evaluator_args)
    lm.task_dict = {"toy": {"test": {0: {"image": Image.new("RGB", (64, 48), "red")},
                                     1: {"image": Image.new("RGB", (40, 64), "blue")},
                                     2: {"image": Image.new("RGB", (64, 64), "green")}}}}  # fmt: skip
    return lm


def request(context, gen_kwargs, doc_id, doc_to_visual=lambda doc: [doc["image"]]):
    return Instance(
        request_type="generate_until",
        arguments=(context, gen_kwargs, doc_to_visual, doc_id, "toy", "test"),
        idx=0,
        metadata={"task": "toy", "doc_id": doc_id, "repeats": 1},
    )


def test_is_an_lmms_model(model):
    assert isinstance(model, lmms) and model.is_simple and model.batch_size == 2
    assert model.rank == 0 and model.world_size == 1


def test_generate_until_answers_each_request_with_its_image(model):
    greedy = {"until": ["\n\n"], "max_new_tokens": 4, "temperature": 0, "do_sample": False}
    other = {**greedy, "max_new_tokens": 2}
    requests = [request("What colour?", greedy, 0), request("What shape?", greedy, 1), request("Describe.", other, 2)]
    answers = model.generate_until(requests)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    pipe = model.pipeline
    docs = model.task_dict["toy"]["test"]
    expected = pipe.generate_batch(["What colour?", "What shape?"], [[docs[0]["image"]], [docs[1]["image"]]],
                                   GenerationOptions(max_new_tokens=4, stop=["\n\n"]))  # fmt: skip
    assert answers[:2] == expected  # same prompts, images and settings as the pipeline itself
    assert answers[2] == pipe.generate("Describe.", [docs[2]["image"]], GenerationOptions(max_new_tokens=2))


def test_generation_kwargs_map_to_options(model):
    options = model._options({"until": "###", "max_new_tokens": 7, "temperature": 0.7, "do_sample": False})
    assert (options.stop, options.max_new_tokens, options.temperature) == (["###"], 7, 0.0)
    assert model._options({}).max_new_tokens == 128  # the model_args default when a task sets none


def test_video_paths_go_to_the_video_path(model, tmp_path):
    from nvila.synth.videos import encode_mp4

    frames = np.zeros((8, 64, 64, 3), dtype=np.uint8)
    frames[:, 20:40, 20:40] = 255
    video = tmp_path / "clip.mp4"
    encode_mp4(video, frames, 4)
    model.task_dict["toy"]["test"][3] = {"video": str(video)}
    images, videos = model._media(request("q", {}, 3, lambda doc: [doc["video"]]))
    assert images == [] and videos == [str(video)]
    [answer] = model.generate_until([request("What moves?", {"max_new_tokens": 3}, 3, lambda doc: [doc["video"]])])
    assert isinstance(answer, str)


def test_video_options_come_from_model_args(checkpoint):
    from nvila.errors import ConfigError

    lm = NVILA.create_from_arg_string(f"pretrained={checkpoint},frame_sampling=linspace,video_timestamps=True")
    assert (lm.pipeline.processor.video_sampling, lm.pipeline.processor.video_timestamps) == ("linspace", True)
    plain = NVILA.create_from_arg_string(f"pretrained={checkpoint}")
    assert (plain.pipeline.processor.video_sampling, plain.pipeline.processor.video_timestamps) == ("centres", False)
    with pytest.raises(ConfigError, match="centres, linspace"):
        NVILA.create_from_arg_string(f"pretrained={checkpoint},frame_sampling=random")
    with pytest.raises(ValueError, match="video_timestamps must be true or false"):
        NVILA.create_from_arg_string(f"pretrained={checkpoint},video_timestamps=maybe")


def test_loglikelihood_is_not_implemented_with_a_clear_message(model):
    with pytest.raises(NotImplementedError, match="loglikelihood"):
        model.loglikelihood([request("q", {}, 0)])


def test_entry_point_registers_the_model(tmp_path, monkeypatch):
    """The "lmms_eval.models" entry point (as pyproject declares it) resolves "nvila" to the plugin class."""
    dist = tmp_path / "nvila_plugin_check-0.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nvila-plugin-check\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text("[lmms_eval.models]\nnvila = nvila.eval.lmms_plugin:manifest\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ModelRegistryV2()
    registry.load_entrypoint_manifests()
    assert registry.get_model_class("nvila") is NVILA
    assert manifest().simple_class_path == "nvila.eval.lmms_plugin.NVILA"
