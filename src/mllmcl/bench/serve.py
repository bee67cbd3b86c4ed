"""`mllmcl bench serve` (figures in docs/serving.md): a real `mllmcl serve` process on 127.0.0.1 answers the same
N inputs (held-out rows of the library's experts, sent as PNG data URLs with model "auto") at each concurrency
level; the client is an asyncio httpx loop in this process (another process than the server, as a deployment
would be). Reported per level: requests/s, p50 and p95 latency, mean batch size, the share of the time the
worker spent computing (the rest it waited for requests); and the ratio of served throughput at the highest
level to offline batched `RoutedModel.answer` on the same inputs in one call (the best of `repeats` offline
runs, each served level once: on a shared machine the ratio errs low). The served answers are checked to
equal the offline ones."""
from __future__ import annotations

import asyncio
import base64
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import httpx
import torch

from mllmcl.core.errors import UserError
from mllmcl.core.io import write_json_atomic
from mllmcl.report.figures import serving_plot
from mllmcl.data.records import load_image
from mllmcl.run.benchmark import prepare_benchmark
from mllmcl.serve.library import Library
from mllmcl.serve.routed import RoutedModel, use_threads


# --- bench serve ----------------------------------------------------------------------------------------------------

def _inputs(model: RoutedModel, n: int) -> tuple[list, list[str]]:
    """n (image, question) pairs, cycling over the experts' held-out rows (a library) or test rows (a run)."""
    if Library.exists(model.source):
        library = Library(model.source)
        pools = [library.heldout(r) for r in library.experts(model.version)]
    else:
        pools = [t.test for t in prepare_benchmark(model.ctx.config, progress=False).tasks]
    rows = [pool[i] for i in range(max(map(len, pools))) for pool in pools if i < len(pool)]
    if not rows:
        raise UserError(f"{model.source}: no held-out rows to send")
    rows = [rows[i % len(rows)] for i in range(n)]
    return [load_image(s.image) for s in rows], [s.question for s in rows]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_serve_bench(path: str | Path, requests: int, concurrency: Sequence[int], max_batch: int,
                    max_wait_ms: float | None, max_tokens: int, fallback: bool, repeats: int,
                    threads: int | None = None, out: str | Path | None = None) -> dict:
    model = RoutedModel.load(path, fallback=fallback)
    use_threads(threads)
    images, questions = _inputs(model, requests)
    urls = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    model.answer(images[:8], questions[:8], max_new_tokens=max_tokens)  # warm-up
    times = []
    for _ in range(repeats):  # the best of a few: other work on the machine only ever slows a run down
        start = time.perf_counter()
        offline = model.answer(images, questions, max_new_tokens=max_tokens)
        times.append(time.perf_counter() - start)
    offline_rate = requests / min(times)
    del model

    port = _free_port()
    command = [sys.executable, "-m", "mllmcl", "serve", str(path), "--port", str(port), "--watch", "0",
               "--max-batch", str(max_batch), "--max-tokens", str(max_tokens)]
    if max_wait_ms is not None:
        command += ["--max-wait-ms", str(max_wait_ms)]
    if not fallback:
        command.append("--no-fallback")
    if threads is not None:
        command += ["--threads", str(threads)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(server, url)
        levels = []
        for c in concurrency:
            asyncio.run(_load(url, urls[:max(8, c)], questions, c, max_tokens))  # warm-up at this level
            before = httpx.get(f"{url}/health").json()
            wall, latencies, answers = asyncio.run(_load(url, urls, questions, c, max_tokens))
            after = httpx.get(f"{url}/health").json()
            batches = after["batches"] - before["batches"]
            levels.append({"concurrency": c, "requests": requests, "seconds": round(wall, 3),
                           "requests_per_second": round(requests / wall, 2),
                           "p50_ms": round(1000 * _quantile(latencies, 0.50), 1),
                           "p95_ms": round(1000 * _quantile(latencies, 0.95), 1),
                           "mean_batch": round(requests / max(1, batches), 2),
                           "worker_busy": round((after["busy_seconds"] - before["busy_seconds"]) / wall, 3),
                           "answers_match_offline": answers == offline.texts})
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    top = levels[-1]
    report = {"path": str(path), "requests": requests, "max_batch": max_batch, "max_wait_ms": max_wait_ms,
              "fallback": fallback,
              "max_tokens": max_tokens,
              "offline_requests_per_second": round(offline_rate, 2), "levels": levels,
              "served_vs_offline": round(top["requests_per_second"] / offline_rate, 3),
              "cpu_threads": _threads()}
    print(f"serve benchmark on {path}: {requests} requests (model auto, max_tokens {max_tokens}{', no fallback' if not fallback else ''}), "
          f"server batch <= {max_batch}, {report['cpu_threads']} torch threads")
    print(f"   {'concurrency':>11} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'mean batch':>10} {'busy':>5}  "
          "answers = offline")
    for level in levels:
        print(f"   {level['concurrency']:>11} {level['requests_per_second']:>8.2f} {level['p50_ms']:>8.1f} "
              f"{level['p95_ms']:>8.1f} {level['mean_batch']:>10.2f} {level['worker_busy']:>5.0%}  "
              f"{level['answers_match_offline']}")
    print(f"   offline batched RoutedModel.answer (best of {repeats}): {offline_rate:.2f} samples/s; served at concurrency "
          f"{top['concurrency']} / offline = {report['served_vs_offline']:.3f} (goal >= 0.7)")
    if out:
        write_json_atomic(out, report)
        print(f"   plot: {serving_plot(report, Path(out).with_suffix('.png'))}")
    return report


def _threads() -> int:
    return torch.get_num_threads()


def _wait_ready(server: subprocess.Popen, url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise UserError(f"the server exited: {(server.stderr.read() or '').strip()[-500:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise UserError(f"the server at {url} did not come up in {timeout:.0f} s")


async def _load(url: str, urls: Sequence[str], questions: Sequence[str], concurrency: int,
                max_tokens: int) -> tuple[float, list[float], list[str]]:
    """Send every request, `concurrency` at a time; wall seconds, per-request latencies, answers in order."""
    answers: list[str] = [""] * len(urls)
    latencies: list[float] = []
    queue = list(range(len(urls)))[::-1]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def worker() -> None:
            while queue:
                k = queue.pop()
                body = {"model": "auto", "max_tokens": max_tokens, "messages": [{"role": "user", "content": [
                    {"type": "text", "text": questions[k]}, {"type": "image_url", "image_url": {"url": urls[k]}}]}]}
                sent = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body)
                latencies.append(time.perf_counter() - sent)
                response.raise_for_status()
                answers[k] = response.json()["choices"][0]["message"]["content"]

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, latencies, answers


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


__all__ = ["run_serve_bench"]
