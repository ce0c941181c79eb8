"""An lmms-eval model plugin: `lmms-eval --model nvila --model_args pretrained=PATH --tasks ...`.

Owns: the `NVILA` class on lmms-eval's `lmms` base (generate_until; the log-likelihood requests raise
NotImplementedError) and `manifest()`, the payload of the "lmms_eval.models" entry point that registers it.
lmms-eval is optional (`pip install 'nvila[lmms]'` then `pip install --no-deps lmms-eval==0.7.3`, as
`make setup` does); importing this module without it raises an ImportError that says so. Does not own prompts
or scoring: lmms-eval's tasks do that (`nvila.eval.lmms_task` writes one over an `nvila synth` dataset).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

try:
    from lmms_eval.api.instance import Instance
    from lmms_eval.api.model import lmms
    from lmms_eval.utils import simple_parse_args_string
except ImportError as e:  # lmms-eval itself, or one of the modules its base class imports
    raise ImportError(
        f"the nvila lmms-eval plugin needs lmms-eval ({e}); install it with pip install 'nvila[lmms]' && "
        "pip install --no-deps lmms-eval==0.7.3"
    ) from e

from nvila.eval.loaders import VIDEO_SUFFIXES

MODEL_ID = "nvila"


def manifest():
    """The entry point payload registering `NVILA` as lmms-eval's model "nvila" (lmms-eval >= 0.7)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.NVILA")


def _is_video(visual: Any) -> bool:
    return isinstance(visual, (str, os.PathLike)) and str(visual).endswith(VIDEO_SUFFIXES)


def _flatten(visuals: Any) -> list[Any]:
    if visuals is None:
        return []
    if isinstance(visuals, (list, tuple)):
        return [v for item in visuals for v in _flatten(item)]
    return [visuals]


class NVILA(lmms):
    """NVILA through `NVILAPipeline`: requests batched by identical generation settings, greedy by default.

    model_args: pretrained (checkpoint folder, default the shipped model), device (default cuda when there is
    one), dtype (float32 / bfloat16 / float16), batch_size, max_new_tokens (when a task gives none),
    frame_sampling (centres / linspace) and video_timestamps (true / false) for videos given as paths.
    """

    is_simple = True

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> NVILA:
        """As lmms-eval's, except that a --model_args key wins over the evaluator's setting of the same name.

        lmms-eval always passes its --batch_size (default 1); its own version then fails on batch_size=N in
        --model_args with "got multiple values for keyword argument".
        """
        evaluator_args = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**{**evaluator_args, **simple_parse_args_string(arg_string)})

    def __init__(
        self,
        pretrained: str | None = None,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int | str = 1,
        max_new_tokens: int | str = 128,
        frame_sampling: str = "centres",
        video_timestamps: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        import torch

        from nvila.assets import DEFAULT_MODEL
        from nvila.pipeline import NVILAPipeline

        kwargs.pop("max_batch_size", None)  # passed by lmms-eval's evaluator; one fixed batch size here
        if kwargs:
            raise ValueError(f"nvila: unknown model_args {', '.join(sorted(kwargs))}")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if not isinstance(video_timestamps, bool):
            raise ValueError(f"nvila: video_timestamps must be true or false, got {video_timestamps!r}")
        self.pipeline = NVILAPipeline.from_pretrained(pretrained or DEFAULT_MODEL, device=device, dtype=dtype)
        self.pipeline.processor.video_sampling = frame_sampling  # checked there (ConfigError names the choices)
        self.pipeline.processor.video_timestamps = video_timestamps
        self.model_path = str(pretrained or DEFAULT_MODEL)
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 1
        self.max_new_tokens = int(max_new_tokens)

    # ---- generation --------------------------------------------------------------------------------------
    def _options(self, gen_kwargs: dict):
        from nvila.generation import GenerationOptions

        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        temperature = float(gen_kwargs.get("temperature") or 0.0) if gen_kwargs.get("do_sample", True) else 0.0
        return GenerationOptions(
            max_new_tokens=int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens),
            temperature=temperature,
            top_p=float(gen_kwargs.get("top_p") or 1.0),
            stop=[s for s in until if s],
        )

    def _media(self, request: Instance) -> tuple[list[Any], list[Any]]:
        """(images, videos) of a request: its doc_to_visual output, split into video paths and images."""
        _, _, doc_to_visual, doc_id, task, split = request.args
        visuals = _flatten(doc_to_visual(self.task_dict[task][split][doc_id])) if doc_to_visual else []
        return [v for v in visuals if not _is_video(v)], [v for v in visuals if _is_video(v)]

    def generate_until(self, requests: Sequence[Instance]) -> list[str]:
        """Answers in request order; consecutive requests with the same generation settings share a batch."""
        answers: list[str] = []
        progress = tqdm(total=len(requests), desc="nvila", unit="request", disable=self.rank != 0)
        start = 0
        while start < len(requests):
            gen_kwargs = requests[start].args[1]
            end = start + 1
            while end < len(requests) and end - start < self.batch_size and requests[end].args[1] == gen_kwargs:
                end += 1
            batch = requests[start:end]
            prompts = [r.args[0] for r in batch]
            media = [self._media(r) for r in batch]
            images, videos = [m[0] for m in media], [m[1] for m in media]
            outputs = self.pipeline.generate_batch(prompts, images, self._options(dict(gen_kwargs)), videos=videos)
            for request, output in zip(batch, outputs):
                self.cache_hook.add_partial("generate_until", (request.args[0], gen_kwargs), output)
            answers += outputs
            progress.update(len(batch))
            start = end
        progress.close()
        return answers

    def loglikelihood(self, requests: Sequence[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError(
            "nvila's lmms-eval plugin answers generate_until tasks only; loglikelihood (perplexity / ranking "
            "tasks) is not implemented"
        )

    def generate_until_multi_round(self, requests: Sequence[Instance]) -> list[str]:
        raise NotImplementedError("nvila's lmms-eval plugin does not implement multi-round generation")

    def __repr__(self) -> str:
        return f"NVILA(pretrained={Path(self.model_path).name!r}, batch_size={self.batch_size})"
