"""Serving benchmarks (figures in docs/serving.md).

`mllmcl bench serve`: a real `mllmcl serve` process on 127.0.0.1 answers the same N inputs (held-out rows of
the library's experts, sent as PNG data URLs with model "auto") at each concurrency level; the client is an
asyncio httpx loop in this process (another process than the server, as a deployment would be). Reported
per level: requests/s, p50 and p95 latency, mean batch size; and the ratio of served throughput at the
highest level to offline batched `RoutedModel.answer` on the same inputs in one call (the best of `repeats`
offline runs, each served level once: on a shared machine the ratio errs low). The served answers are
checked to equal the offline ones.

`mllmcl bench openworld`: the library's router on the seen tasks' test rows (the library calibrated its
threshold on other rows: validation rows where the data has them) and on the benchmark's unseen-domain rows:
AUROC of the router's confidence (seen vs unseen), how many unseen rows reach the base model, the seen rows
falsely rejected, and what the fallback costs in accuracy on the seen tasks; also with thresholds calibrated
(per expert, on the library's held-out rows) to other target false-reject rates."""
from __future__ import annotations

import asyncio
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from mllmcl.data.tasks import UNSEEN
from mllmcl.errors import UserError
from mllmcl.eval import get_scorer
from mllmcl.routing.answer import BASE, choose, threshold_of
from mllmcl.serve.library import Library
from mllmcl.serve.openworld import auroc, calibrate
from mllmcl.serve.routed import RoutedModel
from mllmcl.utils.io import write_json_atomic


# --- bench serve ----------------------------------------------------------------------------------------------------

def _inputs(model: RoutedModel, n: int) -> tuple[list, list[str]]:
    """n (image, question) pairs, cycling over the experts' held-out rows (a library) or test rows (a run)."""
    from mllmcl.data.records import load_image

    if Library.exists(model.source):
        library = Library(model.source)
        pools = [library.heldout(r) for r in library.experts(model.version)]
    else:
        from mllmcl.runner import prepare_benchmark

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


def run_serve_bench(path: str | Path, requests: int = 256, concurrency: Sequence[int] = (1, 8, 32),
                    max_batch: int = 32, max_wait_ms: float | None = None, max_tokens: int = 32,
                    fallback: bool = True, repeats: int = 3, out: str | Path | None = None) -> dict:
    import httpx

    model = RoutedModel.load(path, fallback=fallback)
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
    print(f"   {'concurrency':>11} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'mean batch':>10}  answers = offline")
    for level in levels:
        print(f"   {level['concurrency']:>11} {level['requests_per_second']:>8.2f} {level['p50_ms']:>8.1f} "
              f"{level['p95_ms']:>8.1f} {level['mean_batch']:>10.2f}  {level['answers_match_offline']}")
    print(f"   offline batched RoutedModel.answer (best of {repeats}): {offline_rate:.2f} samples/s; served at concurrency "
          f"{top['concurrency']} / offline = {report['served_vs_offline']:.3f} (goal >= 0.7)")
    if out:
        write_json_atomic(out, report)
    return report


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _wait_ready(server: subprocess.Popen, url: str, timeout: float = 180) -> None:
    import httpx

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
    import httpx

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


# --- bench openworld ------------------------------------------------------------------------------------------------

def run_openworld_bench(path: str | Path, out: str | Path | None = None, split: str = "test",
                        targets: Sequence[float] = (0.01, 0.05, 0.10)) -> dict:
    from mllmcl.config import build_config
    from mllmcl.runner import prepare_benchmark

    if not Library.exists(path):
        raise UserError(f"{path}: bench openworld needs an expert library (its threshold is calibrated there)")
    library = Library(path)
    model = RoutedModel.from_library(library)
    config = build_config(library.version()["config"])
    bench = prepare_benchmark(config, progress=False)
    tasks = [t for t in bench.tasks if t.name in model.names]
    if not bench.unseen:
        raise UserError(f"{bench.root}: no unseen-domain rows (mllmcl data synth --unseen N writes them)")
    seen = {t.name: list(t.val if split == "val" else t.test) for t in tasks}
    every = [s for rows in seen.values() for s in rows]
    _, confidence, picked = choose(model.router, every + list(bench.unseen), model.names)
    seen_conf, unseen_conf = confidence[:len(every)], confidence[len(every):]
    unseen_picked = picked[len(every):]

    # answers with no fallback (the router's pick) and from the base model, once each; a threshold mixes them
    expert_texts = _answers(model, every, picked[:len(every)], tasks, seen)
    base_texts = _answers(model, every, [BASE] * len(every), tasks, seen)
    credits = {}
    start = 0
    for task in tasks:
        rows = seen[task.name]
        scorer = get_scorer(task.spec.scorer)
        credits[task.name] = [(float(scorer.judge(s.row, expert_texts[start + k])),
                               float(scorer.judge(s.row, base_texts[start + k]))) for k, s in enumerate(rows)]
        start += len(rows)

    policies = {"library": model.threshold}
    own: dict[str, list[float]] = {}
    for record in library.experts():
        _, conf, pick = choose(model.router, library.heldout(record), model.names)
        own[record.name] = [c for c, p in zip(conf, pick) if p == record.name]
    for target in targets:
        limits = {name: calibrate(values, target) for name, values in own.items()}
        policies[f"frr {target:.2f}"] = {name: t for name, t in limits.items() if t is not None}
    unseen_scorer = get_scorer(UNSEEN.scorer)
    unseen_expert = _plain_answers(model, list(bench.unseen), unseen_picked, config.eval.max_new_tokens)
    unseen_base = _plain_answers(model, list(bench.unseen), [BASE] * len(bench.unseen), config.eval.max_new_tokens)
    seen_picked = picked[:len(every)]

    def share_below(conf: Sequence[float], pick: Sequence[str], policy) -> float:
        hits = [(t := threshold_of(policy, p)) is not None and c < t for c, p in zip(conf, pick)]
        return 100 * sum(hits) / max(1, len(hits))

    rows = []
    for label, policy in policies.items():
        per_task, start = {}, 0
        for task in tasks:
            n = len(seen[task.name])
            conf, pick = seen_conf[start:start + n], seen_picked[start:start + n]
            with_fallback = [b if (t := threshold_of(policy, p)) is not None and c < t else e
                             for (e, b), c, p in zip(credits[task.name], conf, pick)]
            per_task[task.name] = {"accuracy": round(100 * sum(e for e, _ in credits[task.name]) / n, 2),
                                   "with_fallback": round(100 * sum(with_fallback) / n, 2),
                                   "rejected": round(share_below(conf, pick, policy), 2)}
            start += n
        mean = statistics.fmean(p["accuracy"] for p in per_task.values())
        mean_fb = statistics.fmean(p["with_fallback"] for p in per_task.values())
        rows.append({"policy": label, "thresholds": policy,
                     "seen_rejected": round(share_below(seen_conf, seen_picked, policy), 2),
                     "unseen_to_base": round(share_below(unseen_conf, unseen_picked, policy), 2),
                     "seen_accuracy": round(mean, 2), "seen_accuracy_with_fallback": round(mean_fb, 2),
                     "cost_points": round(mean - mean_fb, 2), "per_task": per_task})
    unseen_rows = list(bench.unseen)
    report = {"library": str(path), "version": library.current, "router": model.router.kind, "split": split,
              "seen": len(every), "unseen": len(unseen_rows), "auroc": round(auroc(seen_conf, unseen_conf), 4),
              "unseen_accuracy_forced_expert": round(100 * statistics.fmean(
                  unseen_scorer.judge(s.row, t) for s, t in zip(unseen_rows, unseen_expert)), 2),
              "unseen_accuracy_base": round(100 * statistics.fmean(
                  unseen_scorer.judge(s.row, t) for s, t in zip(unseen_rows, unseen_base)), 2),
              "policies": rows}
    print(f"open-world benchmark on {path} (version {library.current}, {model.router.kind} router): {len(every)} seen "
          f"{split} rows of {len(tasks)} tasks, {len(unseen_rows)} unseen-domain rows")
    print(f"   AUROC (router confidence, seen vs unseen): {report['auroc']:.4f}")
    print(f"   {'thresholds':<16}{'unseen->base':>14}{'seen rejected':>15}{'seen acc':>10}{'with fallback':>15}"
          f"{'cost':>7}")
    for row in rows:
        print(f"   {row['policy']:<16}{row['unseen_to_base']:>13.2f}%{row['seen_rejected']:>14.2f}%"
              f"{row['seen_accuracy']:>10.2f}{row['seen_accuracy_with_fallback']:>15.2f}{row['cost_points']:>7.2f}")
    print(f"   unseen rows answered by the router's forced expert: {report['unseen_accuracy_forced_expert']:.2f}% right; "
          f"by the base model: {report['unseen_accuracy_base']:.2f}%")
    if out:
        write_json_atomic(out, report)
    return report


def _answers(model: RoutedModel, samples, models: Sequence[str], tasks, seen) -> list[str]:
    limits = [min(t.spec.max_new_tokens, model.ctx.config.eval.max_new_tokens) for t in tasks for _ in seen[t.name]]
    return model.answer_samples(samples, limits, list(models)).texts


def _plain_answers(model: RoutedModel, samples, models: Sequence[str], limit: int) -> list[str]:
    return model.answer_samples(samples, limit, list(models)).texts


__all__ = ["run_openworld_bench", "run_serve_bench"]
