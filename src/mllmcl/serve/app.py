"""The HTTP server: an OpenAI-compatible Chat Completions API in front of a `RoutedModel` (FastAPI + uvicorn).

    POST /v1/chat/completions   model "auto" (routed), an expert's name (forced) or "base"; text + one image
                                as a data: URL; the response's `model` names the expert that answered
    GET  /v1/models             auto, base and the experts
    POST /v1/library/reload     swap in the library's current version (also done by watching library.json)
    GET  /health

Requests go through the dynamic batcher (serve/batcher.py). Errors use the OpenAI error object
`{"error": {"message", "type", "param", "code"}}`: 400 malformed request, JSON, base64 or image (and any
image URL that is not a data: URL: the server fetches nothing), 401 without the API key (when one is set),
404 unknown model, 413 an image or body over its limit. `max_tokens` is capped. Decoding is greedy
(`temperature` and `top_p` are accepted and ignored). Only the last user message is answered (the chat
template is single-turn, one image per sample). With `stream: true` the answer, generated in its batch,
is sent as server-sent `chat.completion.chunk` events ending with `data: [DONE]`.

With an upstream engine (`create_app(..., upstream=Upstream(url))`, serve/upstream.py) the batcher only routes,
and the upstream answers each request with the chosen expert's adapter; its errors pass through as it sent
them, and one that cannot be reached is a 502."""
from __future__ import annotations

import asyncio
import hmac
import json
import signal
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mllmcl.cl.routing.answer import BASE
from mllmcl.core.errors import UserError
from mllmcl.serve.batcher import Batcher, Done, ShuttingDown
from mllmcl.serve.images import BadImage, decode_image_url
from mllmcl.serve.library import MANIFEST, Library
from mllmcl.serve.routed import AUTO, RoutedModel, as_queries, use_threads
from mllmcl.serve.settings import ServeSettings
from mllmcl.serve.upstream import Upstream, UpstreamError


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


def error_response(status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}},
                        status_code=status, headers=headers)


# --- the request (the OpenAI shape; unknown fields are accepted and ignored) --------------------------------

class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageURL(_Open):
    url: str


class ContentPart(_Open):
    type: str
    text: str | None = None
    image_url: ImageURL | None = None


class Message(_Open):
    role: str
    content: str | list[ContentPart] | None = None


class ChatRequest(_Open):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(1, ge=1)
    stream: bool | None = False
    stream_options: dict | None = None
    temperature: float | None = None


# --- the app -----------------------------------------------------------------------------------------------------

class _BodyLimit:
    """413 for a request body over `limit` bytes, counted as it arrives (Content-Length is not trusted)."""

    class TooLarge(Exception):
        pass

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self.TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except self.TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        response = error_response(413, f"request body over the limit of {self.limit} bytes", code="too_large")
        await response(scope, receive, send)


def create_app(model: RoutedModel, settings: ServeSettings = ServeSettings(),
               upstream: Upstream | None = None, worker: bool = True) -> FastAPI:
    """The FastAPI app serving `model` (a library's version is reloaded from `model.source`). With `upstream`,
    `model` only routes and the upstream engine answers (serve/upstream.py). `worker=False`: the app starts
    no thread for its batcher (`app.state.batcher`); the caller runs it (`serve` does, on the main thread)."""
    batcher = Batcher(model, settings.max_batch, settings.max_wait)
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if worker:
            batcher.start()
        watcher = None
        if settings.watch > 0 and Library.exists(model.source):
            watcher = threading.Thread(target=_watch, args=(batcher, settings, stop), daemon=True,
                                       name="mllmcl-watch")
            watcher.start()
        try:
            yield
        finally:
            stop.set()
            batcher.stop()
            if upstream is not None:
                await upstream.close()

    app = FastAPI(title="mllmcl", summary="MR-LoRA experts behind an OpenAI-compatible API", lifespan=lifespan)
    app.state.batcher = batcher
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError):
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return error_response(err.status, err.message, err.type, err.param, err.code, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            return error_response(400, "the request body is not valid JSON", code="invalid_json")
        where = ".".join(loc) or None
        return error_response(400, f"{where or 'request'}: {first.get('msg', 'invalid request')}", param=where)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, str(err.detail), "invalid_request_error" if err.status_code < 500
                              else "server_error")

    @app.exception_handler(Exception)
    async def _crash(request: Request, err: Exception):
        return error_response(500, f"internal error: {type(err).__name__}", "server_error")

    def authorised(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "missing or wrong API key (Authorization: Bearer KEY)", "authentication_error",
                           code="invalid_api_key")

    @app.get("/health")
    async def health() -> dict:
        served = batcher.model
        return {"status": "ok", "version": served.version, "experts": served.names, "batches": batcher.batches,
                "answered": batcher.answered, "busy_seconds": round(batcher.busy, 3), "threshold": served.threshold,
                "upstream": upstream.url if upstream is not None else None}

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    async def models() -> dict:
        served = batcher.model
        created = int(time.time())
        data = [{"id": AUTO, "object": "model", "created": created, "owned_by": "mllmcl",
                 "description": "routed: the router picks an expert per request, the base model if none fits"},
                {"id": BASE, "object": "model", "created": created, "owned_by": "mllmcl",
                 "description": f"the base model {served.backbone.name}"}]
        data += [{"id": e.name, "object": "model", "created": created, "owned_by": "mllmcl", "parent": BASE,
                  "description": e.description} for e in served.experts]
        return {"object": "list", "data": data}

    @app.post("/v1/library/reload", dependencies=[Depends(authorised)])
    async def reload() -> dict:
        if not Library.exists(batcher.model.source):
            raise APIError(400, "this server serves a run folder, not an expert library: nothing to reload")
        before = batcher.model.version
        try:
            new = await asyncio.wrap_future(batcher.swap(_loader(settings)))
        except UserError as err:
            raise APIError(409, f"reload failed, still serving version {before}: {err}", code="reload_failed")
        return {"previous": before, "version": new.version, "experts": new.names}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    async def chat(body: ChatRequest):
        served = batcher.model
        if body.model not in served.models():
            raise APIError(404, f"model {body.model!r} does not exist; this server has: "
                                f"{', '.join(served.models())}", param="model", code="model_not_found")
        if (body.n or 1) != 1:
            raise APIError(400, "n must be 1", param="n")
        question, image = _user_turn(body, settings)
        requested = body.max_completion_tokens or body.max_tokens or settings.default_max_tokens
        limit = min(requested, settings.max_tokens)
        query = as_queries([image], [question])[0]
        try:
            done: Done = await asyncio.wrap_future(batcher.submit(query, body.model, limit,
                                                                  route_only=upstream is not None))
        except UserError as err:
            raise APIError(400, str(err))
        except ShuttingDown as err:
            raise APIError(503, str(err), "server_error", code="shutting_down")
        if upstream is not None:
            return await _forward(upstream, body, limit, done)
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(_events(done, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return _completion(done)

    return app


def _user_turn(body: ChatRequest, settings: ServeSettings):
    """The question and image of the last user message."""
    users = [m for m in body.messages if m.role == "user"]
    if not users:
        raise APIError(400, "messages: no user message", param="messages")
    content = users[-1].content
    parts = [ContentPart(type="text", text=content)] if isinstance(content, str) else list(content or [])
    texts, images = [], []
    for part in parts:
        if part.type == "text":
            texts.append(part.text or "")
        elif part.type == "image_url":
            if part.image_url is None:
                raise APIError(400, "an image_url part needs image_url.url", param="messages")
            images.append(part.image_url.url)
        else:
            raise APIError(400, f"content part type {part.type!r} is not supported (text, image_url)",
                           param="messages")
    question = "\n".join(t for t in texts if t.strip()).strip()
    if not question:
        raise APIError(400, "the last user message has no text", param="messages")
    if len(images) != 1:
        raise APIError(400, f"the last user message must hold exactly one image_url part, got {len(images)} "
                            "(the model reads one image per question)", param="messages")
    try:
        image = decode_image_url(images[0], settings.max_image_bytes, settings.max_image_pixels)
    except BadImage as err:
        raise APIError(err.status, str(err), param="messages",
                       code="image_too_large" if err.status == 413 else "invalid_image")
    return question, image


async def _forward(upstream: Upstream, body: ChatRequest, limit: int, done: Done):
    """The request as the client sent it, for the chosen expert's adapter, capped at `limit` tokens."""
    payload = body.model_dump(exclude_none=True)
    payload.pop("max_completion_tokens", None)
    payload["max_tokens"] = limit
    try:
        payload["model"] = await upstream.model_for(done.expert)
        if body.stream:
            events = await upstream.stream(payload, done.expert)
            return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        answer = await upstream.complete(payload)
    except UpstreamError as err:
        return JSONResponse(err.body, status_code=err.status)
    answer["model"] = done.expert
    answer["routing"] = _routing(done)
    return answer


def _routing(done: Done) -> dict:
    return {"expert": done.expert, "confidence": round(done.confidence, 6), "version": done.version}


def _completion(done: Done) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": done.expert, "system_fingerprint": _fingerprint(done),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                         "finish_reason": "stop" if done.stopped else "length", "logprobs": None}],
            "usage": _usage(done), "routing": _routing(done)}


def _events(done: Done, include_usage: bool):
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None, **extra: Any) -> str:
        data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": done.expert,
                "system_fingerprint": _fingerprint(done),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""}, None)
    if done.text:
        yield chunk({"content": done.text}, None)
    yield chunk({}, "stop" if done.stopped else "length")
    if include_usage:
        yield (f"data: {json.dumps({'id': ident, 'object': 'chat.completion.chunk', 'created': created, 'model': done.expert, 'choices': [], 'usage': _usage(done)})}\n\n")
    yield "data: [DONE]\n\n"


def _usage(done: Done) -> dict:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def _fingerprint(done: Done) -> str:
    return f"mllmcl-v{done.version}" if done.version is not None else "mllmcl-run"


# --- reloading ------------------------------------------------------------------------------------------------------

def _loader(settings: ServeSettings):
    def load(current: RoutedModel) -> RoutedModel:
        library = Library(current.source)
        if library.current == current.version:
            return current
        return RoutedModel.from_library(library, backbone=current.backbone, fallback=settings.fallback)

    return load


def _watch(batcher: Batcher, settings: ServeSettings, stop: threading.Event) -> None:
    """Poll library.json; when its pointer names another version, swap it in (between batches)."""
    path = Path(batcher.model.source) / MANIFEST
    seen = None
    while not stop.wait(settings.watch):
        try:
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if key == seen:
                continue
            seen = key
            if Library(batcher.model.source).current != batcher.model.version:
                new = batcher.swap(_loader(settings)).result()
                print(f"mllmcl serve: now serving version {new.version} ({', '.join(new.names)})", file=sys.stderr)
        except Exception as err:  # noqa: BLE001 - keep serving what works
            print(f"mllmcl serve: library watch: {err}", file=sys.stderr)


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings = ServeSettings(),
          log_level: str = "warning", upstream: Upstream | None = None) -> None:
    """Load `path` (a library or a run folder) and serve it until interrupted (one process); with `upstream`,
    route here and let the upstream engine answer."""
    model = RoutedModel.load(path, fallback=settings.fallback)
    use_threads(settings.threads)
    app = create_app(model, settings, upstream, worker=False)
    batcher: Batcher = app.state.batcher
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False))
    http = threading.Thread(target=server.run, name="mllmcl-http")
    answered = f", answered by {upstream.url}" if upstream is not None else ""
    print(f"mllmcl serve: {path} (version {model.version}, experts {', '.join(model.names)}{answered}) on "
          f"http://{host}:{port}/v1", file=sys.stderr)

    def shut_down() -> None:  # no new connections; the queued requests are answered
        server.should_exit = True
        batcher.stop()

    def on_signal(_signum, _frame) -> None:  # Ctrl-C or SIGTERM: shut down; a second one: stop at once
        if server.should_exit:
            server.force_exit = True
            raise KeyboardInterrupt
        shut_down()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    http.start()
    watch_http = threading.Thread(target=lambda: (http.join(), batcher.stop()), daemon=True)
    watch_http.start()  # the server failed to start or exited: stop answering too
    try:
        batcher.run()  # the model on the main thread: torch's CPU threads run it fastest from there
    finally:
        shut_down()
        http.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise UserError(f"the HTTP server could not start on {host}:{port} (see the message above)")


__all__ = ["APIError", "create_app", "serve"]
