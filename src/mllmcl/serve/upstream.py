"""An OpenAI-compatible engine that answers for the router: `mllmcl serve --backend vllm --upstream URL`.

The `mllmcl` server keeps the router (and the backbone it reads) and picks the expert of each request; the
upstream, typically vLLM serving the adapters of `library export --format vllm` under the experts' names,
generates. The request goes on as the client sent it (messages, image, sampling fields), with `model` set to
the chosen expert's adapter name, or to the upstream's base model for the fallback, and `max_tokens` capped
as the server caps it. The answer comes back in the OpenAI format, streamed or not, with `model` naming the
expert and, when not streamed, the routing record that local answers carry."""
from __future__ import annotations

import json
from typing import AsyncIterator

import httpx

from mllmcl.cl.routing.answer import BASE
from mllmcl.core.errors import UserError


class UpstreamError(Exception):
    """The upstream answered with an error (passed through as it is) or could not be reached (502)."""

    def __init__(self, status: int, body: dict):
        super().__init__(body.get("error", {}).get("message", "upstream error"))
        self.status, self.body = status, body


class Upstream:
    """The upstream server at `url` (its base URL, with or without the trailing `/v1`)."""

    def __init__(self, url: str, api_key: str | None = None, base_model: str | None = None, timeout: float = 600.0):
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise UserError(f"--upstream {url!r}: not an http(s) URL (e.g. http://127.0.0.1:8001/v1)")
        self.url = url if url.endswith("/v1") else f"{url}/v1"
        self.api_key, self.timeout = api_key, timeout
        self._base = base_model
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # created in the server's event loop, on first use
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=self.timeout)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def base_model(self) -> str:
        """The upstream's base model: `base_model` if given, else the first model `/v1/models` lists without a
        parent (vLLM lists each LoRA adapter with its base as parent)."""
        if self._base is None:
            data = await self._json("GET", "/models")
            bases = [m.get("id") for m in data.get("data", []) if not m.get("parent")]
            if not bases:
                raise UpstreamError(502, _error(f"{self.url}/models lists no base model; pass --upstream-model"))
            self._base = bases[0]
        return self._base

    async def model_for(self, expert: str) -> str:
        return await self.base_model() if expert == BASE else expert

    async def complete(self, payload: dict) -> dict:
        return await self._json("POST", "/chat/completions", payload)

    async def stream(self, payload: dict, expert: str) -> AsyncIterator[str]:
        """Open the upstream's event stream (raising its error before any event is sent) and return the
        events with `model` naming `expert`."""
        try:
            response = await self.client.send(self.client.build_request("POST", "/chat/completions", json=payload),
                                               stream=True)
        except httpx.HTTPError as err:
            raise UpstreamError(502, _unreachable(self.url, err)) from None
        if response.status_code != 200:
            body = await response.aread()
            await response.aclose()
            raise UpstreamError(response.status_code, _body(body, response.status_code))

        async def events() -> AsyncIterator[str]:
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data != "[DONE]":
                        chunk = json.loads(data)
                        chunk["model"] = expert
                        data = json.dumps(chunk, ensure_ascii=False)
                    yield f"data: {data}\n\n"
            finally:
                await response.aclose()

        return events()

    async def _json(self, method: str, path: str, payload: dict | None = None) -> dict:
        try:
            response = await self.client.request(method, path, json=payload)
        except httpx.HTTPError as err:
            raise UpstreamError(502, _unreachable(self.url, err)) from None
        body = _body(response.content, response.status_code)
        if response.status_code != 200:
            raise UpstreamError(response.status_code, body)
        return body


def _error(message: str, code: str = "upstream_error") -> dict:
    return {"error": {"message": message, "type": "server_error", "param": None, "code": code}}


def _unreachable(url: str, err: Exception) -> dict:
    return _error(f"upstream {url} unreachable ({type(err).__name__}: {err})")


def _body(content: bytes, status: int) -> dict:
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _error(f"upstream answered HTTP {status} with a body that is not a JSON object")
    if status != 200 and not isinstance(body.get("error"), dict):
        return _error(f"upstream answered HTTP {status}: {json.dumps(body)[:300]}")
    return body


__all__ = ["Upstream", "UpstreamError"]
