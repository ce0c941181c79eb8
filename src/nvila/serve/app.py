"""The OpenAI-compatible HTTP app: `create_app(pipeline, settings)` -> a FastAPI app for one machine.

Routes: POST /v1/chat/completions (JSON or server-sent events), GET /v1/models, GET /health, GET /metrics
and the web demo at /. Owns: the order of checks on a request (key, content type, body size, JSON,
schema, limits, admission), turning OpenAI messages into the processor's conversation, waiting on the
engine with a deadline, and the error answers. Does not own generation (`engine`) or media (`media`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nvila import __version__
from nvila.errors import NVILAError
from nvila.generation import GenerationOptions
from nvila.models.nvila.tokenization_nvila import SPECIAL_TOKENS
from nvila.pipeline import NVILAPipeline
from nvila.prompt import IMAGE_TOKEN, VIDEO_TOKEN
from nvila.serve import schema
from nvila.serve.engine import Cancelled, Engine, EngineClosed, Event, Failed, Finished, Job, Step
from nvila.serve.limits import Admission, ServeSettings
from nvila.serve.media import frames_per_video, load_request_image, load_request_video
from nvila.serve.metrics import CONTENT_TYPE, ServerMetrics
from nvila.serve.schema import ApiError
from nvila.video_io import VideoFrames

log = logging.getLogger("nvila.serve")

WEB_DIR = Path(__file__).parent / "web"
CHAT_PATH = "/v1/chat/completions"
#: Paths reported in metrics by name; anything else is counted as "other" (bounded label values).
KNOWN_PATHS = {"/", CHAT_PATH, "/v1/models", "/health", "/metrics"}
#: Status reported for a request whose client went away before its answer (nginx's convention).
CLIENT_CLOSED = 499


def create_app(pipeline: NVILAPipeline, settings: ServeSettings | None = None) -> FastAPI:
    """The server app around a loaded pipeline. The engine thread stops when the app's lifespan ends."""
    settings = settings or ServeSettings()
    admission = Admission(settings.max_concurrent)
    metrics = ServerMetrics(lambda: admission.in_flight, settings.max_concurrent, lambda: engine.core.stats())
    engine = Engine(pipeline.model, pipeline.processor, on_tokens=metrics.generated_tokens.inc, config=settings.engine)
    chat = ChatService(settings, engine, admission, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()

    # no /docs: FastAPI's doc pages load scripts from a CDN
    app = FastAPI(title="nvila serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings, app.state.engine, app.state.admission, app.state.metrics = settings, engine, admission, metrics
    app.add_middleware(CountRequests, metrics=metrics)
    _add_error_handlers(app)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_api_key_check(settings.api_key))])
    v1.add_api_route("/chat/completions", chat.handle, methods=["POST"], response_model=None)
    v1.add_api_route("/models", lambda: _model_list(settings), methods=["GET"])
    app.include_router(v1)

    app.add_api_route("/health", lambda: {"status": "ok", "model": settings.model_name}, methods=["GET"])
    app.add_api_route(
        "/metrics", lambda: Response(metrics.render(), media_type=CONTENT_TYPE), methods=["GET"], response_model=None
    )
    app.add_api_route("/", lambda: FileResponse(WEB_DIR / "index.html"), methods=["GET"], include_in_schema=False)
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    return app


def _model_list(settings: ServeSettings) -> dict:
    return schema.ModelList(data=[schema.ModelCard(id=settings.model_name, created=schema.now())]).model_dump()


# ---- cross-cutting: API key, errors, request counting ---------------------------------------------------
def _api_key_check(api_key: str | None):
    async def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'", "invalid_api_key")

    return check


def _error_response(error: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
    if error.status == 429:
        headers["Retry-After"] = "1"
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error_response(ApiError(exc.status_code, str(exc.detail), code))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s", request.url.path, exc_info=exc)
        return _error_response(ApiError(500, "internal server error", "internal_error"))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


class CountRequests:
    """ASGI middleware counting answered HTTP requests by path and status (streaming-safe)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
            self.metrics.requests.inc(path=path, status=str(status[0]))


# ---- request -> conversation ----------------------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one above `limit` bytes, declared or actual."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is larger than this server's limit of {limit:,} bytes", "request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(
                413, f"request body is larger than this server's limit of {limit:,} bytes", "request_too_large"
            )
    return bytes(body)


def parse_request(body: bytes) -> schema.ChatCompletionRequest:
    try:
        data = json.loads(body)
    except ValueError as e:
        raise ApiError(400, f"request body is not valid JSON: {e}", "invalid_json") from None
    try:
        return schema.ChatCompletionRequest.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        message = f"{where}: {first['msg']}" if where else first["msg"]
        more = f" (and {e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
        raise ApiError(400, f"invalid request: {message}{more}", "invalid_request", param=where or None) from None


def _check_text(text: str, k: int) -> str:
    for token in SPECIAL_TOKENS:
        if token in text:
            hints = {IMAGE_TOKEN: "; send images as image_url parts", VIDEO_TOKEN: "; send videos as video_url parts"}
            hint = hints.get(token, "")
            raise ApiError(400, f"message {k + 1} contains the reserved token {token!r}{hint}", "invalid_content")
    return text


def flatten_messages(
    request: schema.ChatCompletionRequest, settings: ServeSettings
) -> tuple[list[dict[str, str]], list[str], list[str]]:
    """OpenAI messages -> the processor's conversation ({"role", "content"} with `<image>` / `<vila/video>` where
    each image / video part was), the image URLs and the video URLs in order. Consecutive text parts are joined
    by a newline."""
    messages, urls, video_urls = [], [], []
    for k, message in enumerate(request.messages):
        role = "system" if message.role == "developer" else message.role
        if message.content is None:
            raise ApiError(400, f"message {k + 1} has no content", "invalid_content", param=f"messages.{k}.content")
        if isinstance(message.content, str):
            messages.append({"role": role, "content": _check_text(message.content, k)})
            continue
        text, previous = "", None
        for part in message.content:
            if isinstance(part, schema.TextPart):
                text += ("\n" if previous == "text" else "") + _check_text(part.text, k)
            elif role != "user":
                raise ApiError(
                    400, f"message {k + 1}: images and videos are only allowed in user messages", "invalid_content"
                )
            elif isinstance(part, schema.VideoPart):
                video_urls.append(part.video_url.url)
                text += VIDEO_TOKEN
            else:
                urls.append(part.image_url.url)
                text += IMAGE_TOKEN
            previous = part.type
        if not text:
            raise ApiError(400, f"message {k + 1} is empty", "invalid_content", param=f"messages.{k}.content")
        messages.append({"role": role, "content": text})
    if len(urls) > settings.max_images:
        raise ApiError(
            400,
            f"{len(urls)} images in one request, above this server's limit of {settings.max_images}",
            "too_many_images",
        )
    return messages, urls, video_urls


def generation_options(request: schema.ChatCompletionRequest, settings: ServeSettings) -> GenerationOptions:
    max_tokens = request.requested_max_tokens
    if max_tokens is not None and max_tokens > settings.max_tokens_cap:
        param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        raise ApiError(
            400, f"{param} {max_tokens} is above this server's cap of {settings.max_tokens_cap}", "max_tokens_too_large"
        )
    try:
        return GenerationOptions(
            max_new_tokens=max_tokens or settings.default_max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=list(request.stop),
            seed=request.seed,
        )
    except NVILAError as e:
        raise ApiError(400, str(e), "invalid_request") from None


def _failure(error: BaseException) -> ApiError:
    """The answer for an error reported by the engine."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, NVILAError):
        return ApiError(400, str(error), "invalid_content")
    if isinstance(error, EngineClosed):
        return ApiError(503, str(error), "shutting_down")
    log.error("generation failed", exc_info=error)
    return ApiError(500, "generation failed; see the server log", "internal_error")


# ---- /v1/chat/completions -------------------------------------------------------------------------------
class ChatService:
    """Answers chat completions: checks, admission, then waits on the engine until a deadline."""

    def __init__(self, settings: ServeSettings, engine: Engine, admission: Admission, metrics: ServerMetrics) -> None:
        self.settings, self.engine, self.admission, self.metrics = settings, engine, admission, metrics

    async def handle(self, request: Request) -> Response:
        arrival = time.perf_counter()
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise ApiError(
                415, f"content type must be application/json, got {media_type or 'none'!r}", "unsupported_media_type"
            )
        req = parse_request(await read_body(request, self.settings.max_request_bytes))
        if req.model is not None and req.model != self.settings.model_name:
            raise ApiError(
                404,
                f"model {req.model!r} not found; this server serves {self.settings.model_name!r}",
                "model_not_found",
            )
        messages, urls, video_urls = flatten_messages(req, self.settings)
        frames = frames_per_video(len(video_urls), self.engine.processor.config, self.settings)
        options = generation_options(req, self.settings)
        ticket = self.admission.try_acquire()
        if ticket is None:
            raise ApiError(
                429, f"server busy: {self.admission.limit} requests in flight; retry shortly", "too_many_requests"
            )
        deadline = arrival + self.settings.timeout_s
        sampling = req.frame_sampling or self.settings.frame_sampling
        timestamps = self.settings.video_timestamps if req.video_timestamps is None else req.video_timestamps
        try:
            images = await anyio.to_thread.run_sync(self._load_images, urls)
            videos = await anyio.to_thread.run_sync(self._load_videos, video_urls, frames, sampling)
            job = Job(
                messages,
                images,
                options,
                asyncio.get_running_loop(),
                on_done=ticket.release,
                videos=videos,
                video_timestamps=timestamps,
            )
            self.engine.submit(job)
        except Exception as e:
            ticket.release()
            raise _failure(e) from None
        except BaseException:  # cancelled while reading images
            ticket.release()
            raise
        run = _Run(job, request, arrival, deadline, self.metrics)
        try:
            first = await run.next_event()  # Started or Failed: errors before any token keep their status
        except BaseException:
            run.close()
            raise
        if isinstance(first, Failed):
            run.close()
            if isinstance(first.error, Cancelled):
                return Response(status_code=CLIENT_CLOSED)
            raise _failure(first.error)
        self.metrics.prompt_tokens.inc(first.prompt_tokens)
        if req.stream:
            run.stop_watching()
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(
                self._sse(run, req, first.prompt_tokens), media_type="text/event-stream", headers=headers
            )
        return await self._complete(run, first.prompt_tokens)

    def _load_images(self, urls: list[str]) -> list[Image.Image]:
        return [load_request_image(url, self.settings, k) for k, url in enumerate(urls)]

    def _load_videos(self, urls: list[str], frames: int, sampling: str) -> list[VideoFrames]:
        cfg = self.engine.processor.config
        return [load_request_video(url, self.settings, k, frames, cfg, sampling) for k, url in enumerate(urls)]

    async def _complete(self, run: _Run, prompt_tokens: int) -> Response:
        pieces: list[str] = []
        try:
            while True:
                event = await run.next_event()
                if isinstance(event, Step):
                    pieces.append(event.text)
                elif isinstance(event, Finished):
                    break
                elif isinstance(event.error, Cancelled):
                    return Response(status_code=CLIENT_CLOSED)
                else:
                    raise _failure(event.error)
        finally:
            run.close()
        answer = schema.ChatCompletion(
            id=schema.completion_id(),
            created=schema.now(),
            model=self.settings.model_name,
            choices=[
                schema.Choice(message=schema.AssistantMessage(content="".join(pieces)), finish_reason=event.reason)
            ],
            usage=_usage(prompt_tokens, event.completion_tokens),
        )
        return JSONResponse(answer.model_dump())

    async def _sse(self, run: _Run, req: schema.ChatCompletionRequest, prompt_tokens: int) -> AsyncIterator[str]:
        cid, created, model = schema.completion_id(), schema.now(), self.settings.model_name

        def chunk(delta: schema.Delta, finish: str | None = None) -> str:
            choice = schema.ChunkChoice(delta=delta, finish_reason=finish)
            return _sse_data(schema.ChatCompletionChunk(id=cid, created=created, model=model, choices=[choice]))

        try:
            yield chunk(schema.Delta(role="assistant", content=""))
            while True:
                try:
                    event = await run.next_event()
                except ApiError as e:  # the deadline passed mid-answer: the status line is already sent
                    yield f"data: {json.dumps(e.body())}\n\n"
                    break
                if isinstance(event, Step):
                    if event.text:
                        yield chunk(schema.Delta(content=event.text))
                elif isinstance(event, Finished):
                    yield chunk(schema.Delta(), event.reason)
                    if req.include_usage:
                        usage = _usage(prompt_tokens, event.completion_tokens)
                        last = schema.ChatCompletionChunk(id=cid, created=created, model=model, choices=[], usage=usage)
                        yield _sse_data(last)
                    break
                else:
                    yield f"data: {json.dumps(_failure(event.error).body())}\n\n"
                    break
            yield "data: [DONE]\n\n"
        finally:  # also on client disconnect: the engine stops this job within one decoding step
            run.close()


def _usage(prompt_tokens: int, completion_tokens: int) -> schema.Usage:
    return schema.Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
    )


def _sse_data(chunk: schema.ChatCompletionChunk) -> str:
    return f"data: {chunk.model_dump_json()}\n\n"


class _Run:
    """Waiting on one job's events: deadline, client disconnects, metrics of its first and last token."""

    def __init__(self, job: Job, request: Request, arrival: float, deadline: float, metrics: ServerMetrics) -> None:
        self.job, self.arrival, self.deadline, self.metrics = job, arrival, deadline, metrics
        self.first_token_seen = False
        self.ended = False
        self._watch: asyncio.Task | None = asyncio.ensure_future(self._cancel_on_disconnect(request))

    async def _cancel_on_disconnect(self, request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        if not self.ended:
            self.metrics.aborted.inc(reason="disconnect")
            self.job.cancel()  # wakes next_event with Failed(Cancelled)

    def stop_watching(self) -> None:
        """Hand disconnect detection over to the server (a streaming response listens for it itself)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    async def next_event(self) -> Event:
        """The job's next event; raises a 504 `ApiError` once the deadline has passed."""
        # asyncio.wait, not wait_for: wait_for (Python <= 3.11) can swallow the handler's cancellation when an
        # event arrives at the same moment, and the job of a client that left would then run to the end
        get = asyncio.ensure_future(self.job.events.get())
        try:
            done, _ = await asyncio.wait({get}, timeout=max(self.deadline - time.perf_counter(), 0))
        except asyncio.CancelledError:  # the client left (or the server stops)
            get.cancel()
            if not self.ended:
                self.metrics.aborted.inc(reason="disconnect")
                self.ended = True
                self.job.cancel()
            raise
        if done:
            event = get.result()
        else:
            get.cancel()
            self.metrics.aborted.inc(reason="timeout")
            self.ended = True
            self.job.cancel()
            raise ApiError(504, f"request timed out after {self.deadline - self.arrival:g} s", "timeout")
        now = time.perf_counter()
        if isinstance(event, Step) and event.token and not self.first_token_seen:
            self.first_token_seen = True
            self.metrics.ttft.observe(now - self.arrival)
        elif isinstance(event, Finished):
            self.metrics.latency.observe(now - self.arrival)
        self.ended = self.ended or isinstance(event, Finished | Failed)
        return event

    def close(self) -> None:
        """Stop the job unless it ended (a client gone mid-stream lands here)."""
        self.stop_watching()
        if not self.ended and not self.job.cancelled:
            self.metrics.aborted.inc(reason="disconnect")
            self.job.cancel()
