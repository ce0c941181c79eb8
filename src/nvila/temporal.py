"""Time in video prompts and answers: time tokens, frame timestamps, intervals, navigation prompts.

Owns: LITA-style relative time tokens (`<t0>`...`<tN-1>`: a time x in a video of duration D is
`<t{round(x / D * (N - 1))}>`, and back `t * D / (N - 1)`), writing frame timestamps into a prompt, reading
(start, end) intervals out of answers, building localization training records, and the NaVILA-style
multi-frame "navigation" prompt with its action parser. Pure text and arithmetic: no torch, no decoding.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nvila.errors import ConfigError
from nvila.prompt import IMAGE_TOKEN, VIDEO_TOKEN

_TAGGED = re.compile(r"<(\d+(?:\.\d+)?|\.\d+)>")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)")


def _check_tokens(duration: float, num_time_tokens: int) -> None:
    if duration <= 0:
        raise ConfigError(f"video duration must be > 0 seconds, got {duration}")
    if num_time_tokens < 2:
        raise ConfigError(f"num_time_tokens must be >= 2, got {num_time_tokens}")


def time_token(seconds: float, duration: float, num_time_tokens: int = 100, fmt: str = "<t{t}>") -> str:
    """The time token of `seconds` in a video of `duration` seconds (clamped to the video)."""
    _check_tokens(duration, num_time_tokens)
    fraction = min(max(seconds / duration, 0.0), 1.0)
    return fmt.format(t=round(fraction * (num_time_tokens - 1)))


def encode_time_tokens(text: str, duration: float, num_time_tokens: int = 100, fmt: str = "<t{t}>") -> str:
    """Replace every `<seconds>` tag (e.g. "<12.5>") in `text` by its time token."""
    _check_tokens(duration, num_time_tokens)
    return _TAGGED.sub(lambda m: time_token(float(m.group(1)), duration, num_time_tokens, fmt), text)


def decode_time_tokens(text: str, duration: float, num_time_tokens: int = 100, fmt: str = "<t{t}>") -> str:
    """Replace every time token in `text` by `<seconds>` (2 decimals); out-of-range tokens are left as they are."""
    _check_tokens(duration, num_time_tokens)
    pattern = re.compile(re.escape(fmt).replace(re.escape("{t}"), r"(\d+)"))

    def seconds(match: re.Match) -> str:
        t = int(match.group(1))
        if t >= num_time_tokens:
            return match.group(0)
        return f"<{round(t * duration / (num_time_tokens - 1), 2):g}>"

    return pattern.sub(seconds, text)


def parse_interval(text: str, duration: float | None = None) -> tuple[float, float] | None:
    """(start, end) seconds from a model answer or an annotation; None when it names fewer than two times.

    LITA's "<12.5> ... <30.0>" tags win when there are two; else the first two numbers ("12.5 - 30.0
    seconds", "from 12.5 s to 30 s"). Times are clamped to [0, duration] and ordered, as LITA's parser does.
    Decode time tokens first (`decode_time_tokens`) for models that answer with them.
    """
    found = _TAGGED.findall(text)
    if len(found) < 2:
        found = _NUMBER.findall(text)
    if len(found) < 2:
        return None
    times = [float(t) for t in found[:2]]
    if duration is not None:
        times = [min(max(t, 0.0), duration) for t in times]
    return min(times), max(times)


def format_interval(start: float, end: float) -> str:
    """The answer form of an interval used by `nvila synth` and localization records: "1.5 - 3.0 seconds"."""
    return f"{start:.1f} - {end:.1f} seconds"


def timestamp_prefix(timestamps: Sequence[float]) -> str:
    """A line telling the model when each sampled frame was taken, to put before a video question."""
    if not timestamps:
        raise ConfigError("no frame timestamps to describe")
    return "The video frames were sampled at " + ", ".join(f"{t:.1f}s" for t in timestamps) + ".\n"


def localization_record(
    record_id: str,
    video: str,
    event: str,
    start: float,
    end: float,
    duration: float,
    *,
    source: str = "localization",
    num_time_tokens: int = 0,
) -> dict:
    """A training record asking when `event` happens in `video` (path relative to the dataset root).

    The answer is "a - b seconds", or two time tokens when `num_time_tokens` > 0 (LITA style).
    """
    if not 0 <= start <= end <= duration:
        raise ConfigError(f"{record_id}: need 0 <= start <= end <= duration, got {start}, {end}, {duration}")
    if not event.strip():
        raise ConfigError(f"{record_id}: the event description is empty")
    if num_time_tokens > 0:
        answer = encode_time_tokens(f"<{start}> <{end}>", duration, num_time_tokens)
    else:
        answer = format_interval(start, end)
    return {
        "id": record_id,
        "source": source,
        "video": video,
        "conversations": [
            {"from": "human", "value": f"{VIDEO_TOKEN}\nWhen does this happen: {event.strip()}?"},
            {"from": "gpt", "value": answer},
        ],
        "meta": {"events": [{"label": event, "start": start, "end": end}], "duration": duration},
    }


def navigation_prompt(instruction: str, actions: Sequence[str], num_frames: int) -> str:
    """A NaVILA-style prompt: `num_frames` observation frames (oldest first, the last is the current view),
    an instruction, and the actions to choose from. Give the frames as images, in order."""
    if num_frames < 1:
        raise ConfigError(f"a navigation prompt needs at least 1 frame, got {num_frames}")
    if len(actions) < 2 or len(set(actions)) != len(actions):
        raise ConfigError("give at least two distinct actions")
    if not instruction.strip():
        raise ConfigError("the navigation instruction is empty")
    history = "".join(IMAGE_TOKEN for _ in range(num_frames - 1))
    lines = [
        f"You are a robot following an instruction. Past observations: {history}" if num_frames > 1 else "",
        f"Current observation: {IMAGE_TOKEN}",
        f"Instruction: {instruction.strip()}",
        f"Choose the next action from: {', '.join(actions)}. Answer with the action only.",
    ]
    return "\n".join(line for line in lines if line)


def parse_action(answer: str, actions: Sequence[str]) -> str | None:
    """The action named in `answer` (case-insensitive; the earliest mention wins), or None."""
    lowered = answer.lower()
    hits = [(lowered.find(a.lower()), -len(a), a) for a in actions if a.lower() in lowered]
    return min(hits)[2] if hits else None
