"""`NVILAProcessor`: prompts + images -> model inputs (ids with expanded placeholders, tiles, block sizes).

Owns: placeholder checks, the official chat format, tokenization, expanding each `<image>` into exactly the
number of media token ids that `geometry` predicts (followed by the media-end text, a newline), optional
frame-time lines before videos, batching with padding, and decoding. Does not own pixels-to-tiles details
(`image_processing`) or decoding loops.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from transformers import BatchFeature, PreTrainedTokenizerBase, ProcessorMixin

from nvila.argtypes import check_frame_sampling
from nvila.errors import MediaError, PromptError
from nvila.image_io import ImageInput, load_image
from nvila.models.nvila.branches import share_prefix
from nvila.models.nvila.configuration_nvila import NVILAConfig
from nvila.models.nvila.geometry import BlockSize, video_tokens
from nvila.models.nvila.image_processing_nvila import NVILAImageProcessor, image_to_tiles, normalize_tiles
from nvila.models.nvila.tokenization_nvila import TURN_END, TURN_START, render_chat
from nvila.prompt import IGNORE_INDEX, IMAGE_TOKEN, VIDEO_TOKEN, place_media
from nvila.temporal import timestamp_prefix

#: Arguments transformers' pipelines pass to a processor, which need nothing here (batches are always padded).
PIPELINE_TEXT_KWARGS = {"padding", "truncation", "max_length", "add_special_tokens"}
VideoInput = Any  #: a video path, a `video_io.VideoFrames`, or a sequence of frames (any `ImageInput`)
MEDIA_PATTERN = re.compile(f"({re.escape(IMAGE_TOKEN)}|{re.escape(VIDEO_TOKEN)})")


class ModelInputs(BatchFeature):
    """A batch ready for `NVILAForConditionalGeneration` (a transformers `BatchFeature`: `model(**inputs)`,
    `model.generate(**inputs)`, `inputs.to(device)` work as for any processor's output).

    input_ids / attention_mask: [b, l]; pixel_values: [n, 3, s, s] tiles of all images in prompt order
    (None without images); image_block_sizes: one entry per image item (see `get_image_features`);
    video_pixel_values: [f, 3, s, s] frames of all videos; video_frame_counts: frames per video.
    """

    def __init__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None,
        image_block_sizes: list[BlockSize],
        video_pixel_values: torch.Tensor | None = None,
        video_frame_counts: list[int] | None = None,
    ) -> None:
        super().__init__(
            {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "pixel_values": pixel_values,
                "image_block_sizes": image_block_sizes,
                "video_pixel_values": video_pixel_values,
                "video_frame_counts": video_frame_counts or [],
            }
        )

    def to_model_kwargs(self) -> dict:
        return dict(self.data)


@dataclass
class VideoClip:
    """Sampled frames of one video and their times (seconds; None for a bare list of frames)."""

    frames: list[Image.Image]
    timestamps: list[float] | None
    duration: float | None


@dataclass
class EncodedSample:
    """One tokenized conversation: ids with media expanded, labels (-100 where no loss), its tiles."""

    input_ids: list[int]
    labels: list[int]
    tiles: list[Image.Image]
    block_sizes: list[BlockSize]
    video_tiles: list[Image.Image] = field(default_factory=list)  #: one 448 resize per frame
    video_frame_counts: list[int] = field(default_factory=list)
    videos: list[VideoClip] = field(default_factory=list)
    #: [start, end) of each single-turn branch after the shared prefix (`encode_branches`); empty: one sequence
    branches: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class MediaSpan:
    """What one media placeholder of the prompt expands to: `groups` runs of `tokens` media token ids, each run
    followed by the media-end ids (one image tile's embeddings, or one pooled group of video frames)."""

    kind: str  #: "image" or "video": which placeholder token it replaces
    groups: int
    tokens: int


class _MediaQueue:
    """The decoded images and videos of one prompt, taken in placeholder order; `tiled` keeps each medium's tiles
    (by object id) so that prompts sharing the media (`encode_branches`) tile them once."""

    def __init__(self, images: list[Image.Image], clips: list[VideoClip], tiled: dict[int, Any] | None = None) -> None:
        self.counts = (len(images), len(clips))
        self.images, self.videos = iter(images), iter(clips)
        self.single_image = len(images) == 1  #: one image gets the full tiling, several one tile each
        self.tiled: dict[int, Any] = {} if tiled is None else tiled


def video_frame_size(cfg: NVILAConfig) -> tuple[int, int]:
    """(width, height) every video frame is resized to: one square tile (`image_to_tiles`, not a single image)."""
    return cfg.tile_size, cfg.tile_size


def media_tensors(
    samples: Sequence[EncodedSample], cfg: NVILAConfig
) -> tuple[torch.Tensor | None, list[BlockSize], torch.Tensor | None, list[int]]:
    """(pixel_values, image_block_sizes, video_pixel_values, video_frame_counts) of samples, in order."""
    tiles = [t for s in samples for t in s.tiles]
    frames = [t for s in samples for t in s.video_tiles]
    return (
        normalize_tiles(tiles, cfg) if tiles else None,
        [b for s in samples for b in s.block_sizes],
        normalize_tiles(frames, cfg) if frames else None,
        [n for s in samples for n in s.video_frame_counts],
    )


class NVILAProcessor(ProcessorMixin):
    """Turns (prompt, images, videos) into model inputs and token ids back into text; a transformers `ProcessorMixin`
    (`AutoProcessor`, `pipeline("image-text-to-text")`, `apply_chat_template`).

    `config` (the model's `NVILAConfig`) decides the tiles and token counts; `image_processor` defaults to
    `NVILAImageProcessor(config)`.

    `video_timestamps`: write each video's frame times before its placeholder ("The video frames were sampled
    at 0.5s, 1.5s, ...", `temporal.timestamp_prefix`), for temporal-localization prompts.
    `video_sampling`: how frames are chosen from a video given as a path (`video_io.load_video`'s `sampling`):
    "centres" (default) or "linspace" (the official NVILA loader's indices).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        config: NVILAConfig,
        *,
        image_processor: NVILAImageProcessor | None = None,
        video_timestamps: bool = False,
        video_sampling: str = "centres",
        chat_template: str | None = None,
    ) -> None:
        super().__init__(
            tokenizer=tokenizer,
            image_processor=image_processor or NVILAImageProcessor(config),
            chat_template=chat_template,
        )
        self.config = config
        self.video_timestamps = video_timestamps
        self.video_sampling = video_sampling
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self.image_token_id != config.image_token_id:
            raise ValueError(
                f"tokenizer's {IMAGE_TOKEN} id {self.image_token_id} differs from the config's {config.image_token_id}"
            )
        self.media_end_ids: list[int] = tokenizer(config.media_end_text, add_special_tokens=False).input_ids
        pad = tokenizer.pad_token_id
        self.pad_token_id: int = pad if pad is not None else tokenizer.eos_token_id
        self.eos_token_ids: list[int] = [tokenizer.eos_token_id]

    @property
    def video_sampling(self) -> str:
        return self._video_sampling

    @video_sampling.setter
    def video_sampling(self, value: str) -> None:
        self._video_sampling = check_frame_sampling(value, "video_sampling")

    # ---- conversations ------------------------------------------------------------------------------
    def encode_messages(
        self,
        messages: Sequence[dict[str, str]],
        images: Sequence[ImageInput] = (),
        videos: Sequence[VideoInput] = (),
        *,
        add_generation_prompt: bool = False,
        video_timestamps: bool | None = None,
    ) -> EncodedSample:
        """Tokenize a conversation ({"role": "user" | "assistant" | "system", "content"}) with its media.

        `<image>` / `<vila/video>` placeholders may sit in any non-assistant message (none: that kind of
        media goes before the first message's text). Labels hold the assistant answers (and their end
        token); everything else, media included, is -100. `video_timestamps` overrides the processor's
        setting for this call (None: the processor's), so one processor can serve requests that differ.
        """
        timestamps = self.video_timestamps if video_timestamps is None else video_timestamps
        return self._encode(messages, self._load_media(images, videos), add_generation_prompt, timestamps)

    def encode_branches(
        self,
        conversations: Sequence[Sequence[dict[str, str]]],
        images: Sequence[ImageInput] = (),
        videos: Sequence[VideoInput] = (),
        *,
        video_timestamps: bool | None = None,
    ) -> EncodedSample:
        """Single-turn conversations about the same media as one sample: the ids they share (the media among them)
        once, then each conversation's own ids as a branch (`nvila.models.nvila.branches`; `sample.branches`).
        The media are decoded once; every conversation must place them alike (the same placeholders before its
        question), so that they share them."""
        timestamps = self.video_timestamps if video_timestamps is None else video_timestamps
        media = self._load_media(images, videos)
        images_, clips = list(media.images), list(media.videos)
        tiled: dict[int, Any] = {}  # every branch's queue shares the tiles of the first
        encoded = [self._encode(m, _MediaQueue(images_, clips, tiled), False, timestamps) for m in conversations]
        media_ids = {self.image_token_id, self.config.video_token_id}
        ids, labels, branches = share_prefix([(e.input_ids, e.labels) for e in encoded])
        if any(t in media_ids for t in ids[branches[0][0] :]):  # media only in the shared prefix
            raise PromptError("branched conversations must share their media: place them before every question alike")
        first = encoded[0]
        return dataclasses.replace(first, input_ids=ids, labels=labels, branches=branches)

    def _encode(
        self, messages: Sequence[dict[str, str]], media: _MediaQueue, add_generation_prompt: bool, timestamps: bool
    ) -> EncodedSample:
        roles = [m["role"] for m in messages]
        texts = place_media([m["content"] for m in messages], *media.counts)
        for role, text in zip(roles, texts):
            if role == "assistant" and (IMAGE_TOKEN in text or VIDEO_TOKEN in text):
                raise PromptError("an assistant answer contains a media placeholder; media belong in user turns")
        sample = EncodedSample([], [], [], [])
        spans: list[MediaSpan] = []
        expanded = [self._expand_text(text, media, sample, spans, timestamps) for text in texts]
        text, answers = render_chat(
            [{"role": r, "content": t} for r, t in zip(roles, expanded)], add_generation_prompt=add_generation_prompt
        )
        self._tokenize(text, answers, sample, spans)
        return sample

    def encode_text(
        self,
        text: str,
        images: Sequence[ImageInput] = (),
        videos: Sequence[VideoInput] = (),
        *,
        video_timestamps: bool | None = None,
    ) -> EncodedSample:
        """Tokenize a prompt already in the chat format (`apply_chat_template`), one placeholder per image and video."""
        timestamps = self.video_timestamps if video_timestamps is None else video_timestamps
        media = self._load_media(images, videos)
        placeholders = (text.count(IMAGE_TOKEN), text.count(VIDEO_TOKEN))
        if placeholders != media.counts:
            raise PromptError(
                f"the chat-format text holds {placeholders[0]} {IMAGE_TOKEN} and {placeholders[1]} {VIDEO_TOKEN} "
                f"placeholders for {media.counts[0]} images and {media.counts[1]} videos; write one per image and video"
            )
        sample = EncodedSample([], [], [], [])
        spans: list[MediaSpan] = []
        expanded = self._expand_text(text, media, sample, spans, timestamps)
        self._tokenize(expanded, [], sample, spans)
        return sample

    def _load_media(self, images: Sequence[ImageInput], videos: Sequence[VideoInput]) -> _MediaQueue:
        """Decode a prompt's images (`image_io.load_image`) and videos (`load_video`)."""
        return _MediaQueue([load_image(image) for image in images], [self.load_video(video) for video in videos])

    def _expand_text(
        self, text: str, media: _MediaQueue, sample: EncodedSample, spans: list[MediaSpan], timestamps: bool
    ) -> str:
        """The text with each placeholder written as the prompt shows it (tiles, time lines); tiles go to `sample`."""
        pieces = MEDIA_PATTERN.split(text)
        out = pieces[0]
        for token, piece in zip(pieces[1::2], pieces[2::2]):
            if token == IMAGE_TOKEN:
                out += self._add_image(next(media.images), media, sample, spans)
            else:
                out += self._add_video(next(media.videos), media, sample, spans, timestamps)
            out += piece
        return out

    def _tokenize(
        self, text: str, answers: list[tuple[int, int]], sample: EncodedSample, spans: list[MediaSpan]
    ) -> None:
        """Fill `sample`'s ids (placeholders expanded by `spans`) and labels (the tokens inside `answers`)."""
        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        labels = [
            token if any(lo <= a and b <= hi for lo, hi in answers) else IGNORE_INDEX
            for token, (a, b) in zip(encoding.input_ids, encoding.offset_mapping)
        ]
        sample.input_ids, sample.labels = self._expand(encoding.input_ids, labels, spans)

    def _add_image(self, image: Image.Image, media: _MediaQueue, sample: EncodedSample, spans: list[MediaSpan]) -> str:
        if id(image) not in media.tiled:
            media.tiled[id(image)] = self.image_processor.tile(image, single_image=media.single_image)
        tiles, blocks, tokens = media.tiled[id(image)]
        sample.tiles += tiles
        sample.block_sizes += blocks
        spans += [MediaSpan("image", 1, tokens.embeds_per_placeholder)] * tokens.placeholders
        # dynamic tiling: one placeholder + newline per tile, as the official prompt builder writes it
        return (IMAGE_TOKEN + "\n") * tokens.placeholders if tokens.placeholders > 1 else IMAGE_TOKEN

    def _add_video(
        self, clip: VideoClip, media: _MediaQueue, sample: EncodedSample, spans: list[MediaSpan], timestamps: bool
    ) -> str:
        tokens = video_tokens(len(clip.frames), self.config)
        if id(clip) not in media.tiled:
            media.tiled[id(clip)] = [image_to_tiles(f, self.config, single_image=False)[0][0] for f in clip.frames]
        sample.video_tiles += media.tiled[id(clip)]
        sample.video_frame_counts.append(len(clip.frames))
        sample.videos.append(clip)
        # one placeholder stands for every pooled frame group: t tokens + the media end after each group
        spans.append(MediaSpan("video", tokens.pooled_frames, self.config.tokens_per_tile))
        if not timestamps:
            return VIDEO_TOKEN
        if clip.timestamps is None:
            raise MediaError(
                "video_timestamps needs each frame's time: give the video as a file path or `VideoFrames`, "
                "not a bare list of frames"
            )
        return timestamp_prefix(clip.timestamps) + VIDEO_TOKEN

    def load_video(self, video: VideoInput) -> VideoClip:
        """A path (sampled with the config's frame count / fps and `video_sampling`), `VideoFrames`, or a list of
        frames.

        Frames read from a path are resized to one tile while decoding (`video_frame_size`), which keeps long
        videos out of memory at full resolution and gives the same pixels as resizing them later.
        """
        if isinstance(video, (str, os.PathLike)):
            from nvila.video_io import load_video

            cfg = self.config
            video = load_video(
                video, cfg.num_video_frames, cfg.fps, sampling=self.video_sampling, size=video_frame_size(cfg)
            )
        if hasattr(video, "frames") and hasattr(video, "timestamps"):
            return VideoClip([load_image(f) for f in video.frames], list(video.timestamps), float(video.duration))
        frames = [load_image(f) for f in video]
        if not frames:
            raise MediaError("a video needs at least one frame")
        return VideoClip(frames, None, None)

    def _expand(self, ids: list[int], labels: list[int], spans: list[MediaSpan]) -> tuple[list[int], list[int]]:
        """Replace the k-th media token by what `spans[k]` says: its embedding positions + media-end ids (no labels)."""
        out_ids: list[int] = []
        out_labels: list[int] = []
        pending = iter(spans)
        kinds = {self.image_token_id: "image", self.config.video_token_id: "video"}
        for token, label in zip(ids, labels):
            if token in kinds:
                span = next(pending, None)
                if span is None or span.kind != kinds[token]:
                    raise PromptError("the prompt text contains an extra media placeholder token")
                expansion = ([token] * span.tokens + self.media_end_ids) * span.groups
                out_ids += expansion
                out_labels += [IGNORE_INDEX] * len(expansion)
            else:
                out_ids.append(token)
                out_labels.append(label)
        return out_ids, out_labels

    def check_length(self, sample: EncodedSample) -> None:
        """Raise `PromptError` when the sample (visual tokens included) exceeds the model's length limit."""
        limit = self.config.text.model_max_length
        if len(sample.input_ids) > limit:
            raise PromptError(
                f"the prompt is {len(sample.input_ids)} tokens with its visual tokens, above the model's limit of "
                f"{limit}; use fewer or smaller images or a shorter prompt"
            )

    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        images: Sequence[ImageInput] | Sequence[Sequence[ImageInput]] | ImageInput | None = None,
        videos: Sequence[VideoInput] | Sequence[Sequence[VideoInput]] | None = None,
        *,
        padding_side: str = "left",
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> ModelInputs:
        """Encode one prompt with its media, or a batch (text: a list; images, videos: one list per prompt).

        A prompt in the chat format (from `apply_chat_template`, starting with the template's turn marker) is
        tokenized as it is; any other prompt becomes one user turn followed by the assistant's generation prompt.
        `padding`, `truncation` and other tokenizer arguments that transformers' pipelines pass are accepted; batches
        are always padded (left by default, as generation needs) and never truncated.
        """
        if return_tensors not in (None, "pt"):
            raise ValueError(
                f"NVILAProcessor returns PyTorch tensors; return_tensors={return_tensors!r} is not supported"
            )
        unknown = sorted(set(kwargs) - PIPELINE_TEXT_KWARGS)
        if unknown:
            raise TypeError(f"NVILAProcessor got unexpected arguments: {', '.join(unknown)}")
        if text is None:
            raise PromptError("give the prompt text (`text=`): NVILA answers a prompt about its images and videos")
        if isinstance(text, str):
            single = [images] if isinstance(images, (str, os.PathLike, Image.Image)) else list(images or [])
            text, images, videos = [text], [single], [list(videos or [])]
        images = images if images is not None else [[] for _ in text]
        videos = videos if videos is not None else [[] for _ in text]
        if not len(images) == len(videos) == len(text):
            raise PromptError(f"got {len(text)} prompts but {len(images)} image and {len(videos)} video lists")
        encoded = [self._encode_prompt(t, imgs, vids) for t, imgs, vids in zip(text, images, videos)]
        for sample in encoded:
            self.check_length(sample)
        input_ids, attention_mask = self.pad([e.input_ids for e in encoded], padding_side)
        return ModelInputs(input_ids, attention_mask, *media_tensors(encoded, self.config))

    def _encode_prompt(self, text: str, images: Sequence[ImageInput], videos: Sequence[VideoInput]) -> EncodedSample:
        if text.lstrip().startswith(TURN_START):
            return self.encode_text(text, images, videos)
        return self.encode_messages([{"role": "user", "content": text}], images, videos, add_generation_prompt=True)

    def apply_chat_template(
        self,
        conversation: list[dict[str, Any]] | list[list[dict[str, Any]]],
        *,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        tokenize: bool = False,
        return_dict: bool = False,
        processor_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | list[str] | ModelInputs | torch.Tensor:
        """Render a conversation (or a batch of them) in the official chat format, as transformers' processors do.

        Messages hold `content` as a string (with `<image>` / `<vila/video>` placeholders) or as a list of parts
        `{"type": "text", "text": ...}`, `{"type": "image", "image" | "url" | "path": ...}`,
        `{"type": "video", "video" | "url" | "path": ...}`. `tokenize=True` returns the model inputs of the text and
        the media of its parts (`return_dict=True`: all of them, else the `input_ids`).
        """
        batch = [conversation] if conversation and isinstance(conversation[0], dict) else conversation
        texts, images, videos = [], [], []
        for messages in batch:
            plain, media = _messages_with_placeholders(messages)
            text = render_chat(plain, add_generation_prompt=add_generation_prompt and not continue_final_message)[0]
            if continue_final_message:
                text = text.removesuffix("\n").removesuffix(TURN_END)
            texts.append(text)
            images.append(media["image"])
            videos.append(media["video"])
        if not tokenize:
            return texts[0] if len(batch) == 1 and isinstance(conversation[0], dict) else texts
        inputs = self(texts, images, videos, **(processor_kwargs or {}))
        return inputs if return_dict else inputs["input_ids"]

    def to_dict(self) -> dict[str, Any]:
        """The processor's settings (what `repr` shows): the model config it tiles for and its video options."""
        return {
            "processor_class": type(self).__name__,
            "config": self.config.to_dict(),
            "video_timestamps": self.video_timestamps,
            "video_sampling": self.video_sampling,
        }

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write the tokenizer, chat template and image processor config into `save_directory` (HF layout;
        `nvila.convert.save_pretrained.save_processor`), beside the model's files."""
        from nvila.convert.save_pretrained import check_local, save_processor

        check_local(bool(kwargs.get("push_to_hub")))
        save_processor(self, save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> NVILAProcessor:
        """The processor of a model: a folder in either layout or a hub id (`nvila.loader.load_processor`)."""
        from nvila.loader import load_processor

        return load_processor(pretrained_model_name_or_path, **kwargs)

    def pad(self, sequences: Sequence[Sequence[int]], padding_side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
        """Pad id lists to [b, l] with the pad id; returns (input_ids, attention_mask)."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        length = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, seq in enumerate(sequences):
            span = slice(length - len(seq), length) if padding_side == "left" else slice(0, len(seq))
            ids[row, span] = torch.tensor(seq, dtype=torch.long)
            mask[row, span] = 1
        return ids, mask

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Token ids -> text, without special tokens."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def _messages_with_placeholders(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, str]], dict[str, list[Any]]]:
    """Messages with list contents flattened to text with placeholders, and the media of their parts in order."""
    media: dict[str, list[Any]] = {"image": [], "video": []}
    placeholders = {"image": IMAGE_TOKEN, "video": VIDEO_TOKEN}
    plain = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            text = ""
            for part in content:
                kind = part.get("type")
                if kind == "text":
                    text += part.get("text", "")
                elif kind in placeholders:
                    source = next((part[k] for k in (kind, "url", "path") if part.get(k) is not None), None)
                    if source is None:
                        raise PromptError(f"the {kind} part {part} needs one of the keys {kind!r}, 'url' or 'path'")
                    media[kind].append(source)
                    text += placeholders[kind]
                else:
                    raise PromptError(f"unknown message part type {kind!r}; use 'text', 'image' or 'video'")
            content = text
        plain.append({"role": message["role"], "content": content})
    return plain, media
