"""The OpenAI wire format: request and response models of /v1/chat/completions and /v1/models, and errors.

Owns: validation of a request's shape and parameter ranges (pydantic), the response/chunk models, and
`ApiError` (an HTTP status + OpenAI's {"error": {"message", "type", "code", "param"}} body). Does not own
limits that depend on settings (`app`), media reading (`media`) or generation (`engine`).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

#: Error `type` per status, as OpenAI names them.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    504: "timeout_error",
}


class ApiError(Exception):
    """An error answer: `status` and OpenAI's error body."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": ERROR_TYPES.get(self.status, "invalid_request_error"),
                "code": self.code,
                "param": self.param,
            }
        }


# ---- requests -------------------------------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (user, metadata, ...)


class TextPart(_Model):
    type: Literal["text"]
    text: str


class ImageURL(_Model):
    url: str
    detail: Literal["auto", "low", "high"] | None = None  #: accepted, ignored: tiling follows the model's config


class ImagePart(_Model):
    type: Literal["image_url"]
    image_url: ImageURL


class VideoURL(_Model):
    url: str


class VideoPart(_Model):
    """Extension to OpenAI's format (as in vLLM): {"type": "video_url", "video_url": {"url": ...}}."""

    type: Literal["video_url"]
    video_url: VideoURL


ContentPart = Annotated[TextPart | ImagePart | VideoPart, Field(discriminator="type")]


class ChatMessage(_Model):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None  #: accepted, ignored


class StreamOptions(_Model):
    include_usage: bool = False


class ChatCompletionRequest(_Model):
    """POST /v1/chat/completions. Temperature defaults to 0 (greedy), unlike OpenAI's 1."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)  #: OpenAI's newer name; wins over max_tokens
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=4)  #: a string or up to 4 strings
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64)  #: torch's seed range
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    tools: list[Any] | None = None
    logprobs: bool | None = None
    #: Extensions (pass them with the openai package's `extra_body`): how this request's videos are sampled and
    #: whether their frame times go into the prompt; None: the server's --frame-sampling / --video-timestamps.
    frame_sampling: Literal["centres", "linspace"] | None = None
    video_timestamps: bool | None = Field(default=None, strict=True)

    @field_validator("stop", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else [] if value is None else value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError("stop sequences must not be empty")
        return value

    @model_validator(mode="after")
    def _check_unsupported(self) -> ChatCompletionRequest:
        if self.n != 1:
            raise ValueError("only n=1 is supported")
        if self.tools:
            raise ValueError("tools are not supported by this server")
        if self.logprobs:
            raise ValueError("logprobs are not supported by this server")
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# ---- responses ------------------------------------------------------------------------------------------
def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


FinishReason = Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int  #: visual tokens included
    completion_tokens: int  #: generated tokens, the end token included
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _without_nones(self, handler: Any) -> dict[str, Any]:  # OpenAI omits the fields a chunk lacks
        return {k: v for k, v in handler(self).items() if v is not None}


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "nvila"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
