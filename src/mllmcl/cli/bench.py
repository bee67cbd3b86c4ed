"""`mllmcl bench …`: benchmarks that print measured figures (docs/engine.md, docs/methods.md, docs/serving.md).
They are command-line tools first, so their knobs' defaults are declared here, once; the functions in
mllmcl/bench take every knob as an argument."""
from __future__ import annotations

import argparse

from mllmcl.cli.options import fractions, non_negative_int, positive_int
from mllmcl.core.errors import UserError
from mllmcl.models.families import FAMILIES


SKILL_HELP = "share of items asking the skill common to all domains (data.skill; default: the benchmark's default)"


def register(commands) -> None:
    bench = commands.group("bench", "benchmarks that print figures (docs/engine.md, docs/methods.md)", "BENCHMARK")
    q = bench.add("engine", _engine, "the engine's training loop vs a bare PyTorch loop; one adapter vs mixed "
                  "adapters in generation")
    q.add_argument("--repeats", type=positive_int, default=5, help="timed repeats, the median is kept (default: %(default)s)")
    q.add_argument("--steps", type=positive_int, default=20, help="timed training steps per loop (default: %(default)s)")
    q.add_argument("--batch-size", type=positive_int, default=32,
                   help="training batch size (default: %(default)s; generation always uses 32)")
    q.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    q.add_argument("--prompts", type=positive_int, default=256,
                   help="generation prompts per configuration (default: %(default)s)")

    q = bench.add("routing", _routing, "MR-LoRA's two-stage inference on a finished run vs the oracle and vs the "
                  "official answer lookup")
    q.add_argument("--run", default="runs/dcl", help="a finished run folder (default: %(default)s)")
    q.add_argument("--method", default="mr-lora", help="which routed method of the run (default: %(default)s)")
    q.add_argument("--repeats", type=positive_int, default=2, help="timed repeats, the best is kept (default: %(default)s)")

    q = bench.add("routers", _routers, "routing accuracy of each router on the synthetic DCL tasks as the question "
                  "templates overlap (data.overlap 0, 0.5, 1), on the validation split")
    q.add_argument("--overlaps", type=fractions, default=(0.0, 0.5, 1.0),
                   help="comma-separated overlap levels (default: 0,0.5,1)")
    q.add_argument("--routers", default=None,
                   help="comma-separated router variants to run (default: all; the report lists their names)")
    q.add_argument("--split", choices=["val", "test"], default="val",
                   help="the split routed (default: %(default)s; tune on it, report test)")
    q.add_argument("--cache", default="runs/data", help="where the synthetic datasets are kept (default: %(default)s)")
    q.add_argument("--seed", type=int, default=0, help="seed of the data and the router training (default: %(default)s)")
    q.add_argument("--train", type=positive_int, default=200,
                   help="training items per task of the synthetic data (the router buffers are drawn from them; "
                        "default: %(default)s)")
    q.add_argument("--skill", type=float, default=None, help=SKILL_HELP)

    q = bench.add("methods", _methods, "training speed and parameter cost of each continual-learning method "
                  "relative to seq-lora, and answering speed")
    q.add_argument("--methods", default="seq-lora,ewc,lwf,o-lora,moelora,cl-moe,hide-llava,sefe,disco,seq-lora+replay",
                   help="comma-separated methods (default: %(default)s)")
    q.add_argument("--cache", default="runs/data", help="where the synthetic datasets are kept (default: %(default)s)")
    q.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    q.add_argument("--train", type=positive_int, default=400,
                   help="training items of each of the two tasks (default: %(default)s)")
    q.add_argument("--skill", type=float, default=None, help=SKILL_HELP)

    q = bench.add("scale", _scale, "the engine at a 7B-class model's shape (random weights, no download): expert "
                  "training, single and routed generation, the MLLM router's pass; samples/s and peak memory")
    q.add_argument("--family", choices=FAMILIES.names(), default="llava",
                   help="llava: LLaVA-1.5-7B; llava-next: LLaVA-NeXT-7B; llava-onevision: LLaVA-OneVision-7B; qwen2-vl, qwen2.5-vl: 7B; qwen3-vl: 8B; "
                        "internvl: InternVL3-8B; idefics3: Idefics3-8B (default: %(default)s)")
    q.add_argument("--layers", type=positive_int, default=None,
                   help="keep the first K layers of both towers (default: all; a CPU needs 1 or 2)")
    q.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: %(default)s)")
    q.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto",
                   help="weights: auto = bf16 on GPU, fp32 on CPU (training uses bf16 autocast either way)")
    q.add_argument("--steps", type=positive_int, default=2, help="timed optimizer steps (default: %(default)s)")
    q.add_argument("--samples", type=positive_int, default=8, help="generation and routing samples (default: %(default)s)")
    q.add_argument("--batch-size", type=positive_int, default=4,
                   help="training samples per step and device (default: %(default)s, as the official scripts)")
    q.add_argument("--grad-accum", type=positive_int, default=2, help="micro-steps per optimizer step (default: %(default)s)")

    q = bench.add("serve", _serve, "the HTTP server's requests/s and p50/p95 latency at several concurrency levels, "
                  "against offline batched answering of the same inputs (docs/serving.md)")
    q.add_argument("--library", required=True, help="an expert library or a finished run folder")
    q.add_argument("--requests", type=positive_int, default=256, help="requests per concurrency level (default: %(default)s)")
    q.add_argument("--concurrency", default="1,8,32", help="concurrency levels (default: %(default)s)")
    q.add_argument("--max-batch", type=positive_int, default=32, help="the server's batch bound (default: %(default)s)")
    q.add_argument("--max-wait-ms", type=float, default=None,
                   help="the server's batching wait (default: the server's own default)")
    q.add_argument("--max-tokens", type=positive_int, default=32, help="answer length of each request (default: %(default)s)")
    q.add_argument("--no-fallback", action="store_true", help="every auto request to an expert (server and offline)")
    q.add_argument("--threads", type=non_negative_int, default=None, metavar="N",
                   help="torch CPU threads, server and offline alike (0: every core; default: the library's run "
                        "setting)")
    q.add_argument("--repeats", type=positive_int, default=3, help="offline runs, the best is kept (default: %(default)s)")
    q.add_argument("--out", default=None, help="also write the figures to this JSON file, and beside it a plot of "
                   "requests/s and latency against clients (the same name, .png)")

    q = bench.add("openworld", _openworld, "the open-world fallback: AUROC of seen vs unseen-domain items, how many "
                  "unseen items reach the base model, and what the fallback costs on the seen tasks (docs/serving.md)")
    q.add_argument("--library", required=True, help="an expert library")
    q.add_argument("--split", choices=["test", "val"], default="test",
                   help="the seen tasks' split to measure on (default: %(default)s; the library calibrates on val)")
    q.add_argument("--targets", type=fractions, default=(0.01, 0.05, 0.10),
                   help="target false-reject rates to calibrate thresholds to, beside the library's (default: "
                        "0.01,0.05,0.1)")
    q.add_argument("--out", default=None, help="also write the figures to this JSON file")


# each handler imports its benchmark when it runs: they load torch

def _engine(args: argparse.Namespace) -> int:
    from mllmcl.bench.engine import run_engine_bench  # loads torch: only when the benchmark runs

    run_engine_bench(steps=args.steps, batch_size=args.batch_size, seed=args.seed, repeats=args.repeats,
                     prompts=args.prompts)
    return 0


def _routing(args: argparse.Namespace) -> int:
    from mllmcl.bench.routing import run_routing_bench  # loads torch: only when the benchmark runs

    run_routing_bench(args.run, method=args.method, repeats=args.repeats)
    return 0


def _routers(args: argparse.Namespace) -> int:
    from mllmcl.bench.routers import print_routers_report, run_routers_bench  # loads torch, as above

    print_routers_report(run_routers_bench(overlaps=args.overlaps, seed=args.seed, cache=args.cache,
                                           split=args.split, routers=args.routers, train=args.train,
                                           skill=args.skill))
    return 0


def _methods(args: argparse.Namespace) -> int:
    from mllmcl.bench.methods import print_methods_report, run_methods_bench  # loads torch, as above

    print_methods_report(run_methods_bench(methods=args.methods, cache=args.cache, seed=args.seed, train=args.train,
                                           skill=args.skill))
    return 0


def _scale(args: argparse.Namespace) -> int:
    from mllmcl.bench.scale import ScaleConfig, cuda_available, print_scale_report, run_scale_bench  # as above

    if args.device.startswith("cuda") and not cuda_available():
        raise UserError(f"--device {args.device}: no CUDA device here")
    print_scale_report(run_scale_bench(ScaleConfig(layers=args.layers, family=args.family, device=args.device,
                                                   dtype=args.dtype,
                                                   steps=args.steps, samples=args.samples, batch_size=args.batch_size,
                                                   grad_accum=args.grad_accum)))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from mllmcl.bench.serve import run_serve_bench  # loads torch: only when the benchmark runs

    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    run_serve_bench(args.library, requests=args.requests, concurrency=concurrency, max_batch=args.max_batch,
                    max_wait_ms=args.max_wait_ms, max_tokens=args.max_tokens, fallback=not args.no_fallback,
                    repeats=args.repeats, threads=args.threads, out=args.out)
    return 0


def _openworld(args: argparse.Namespace) -> int:
    from mllmcl.bench.openworld import run_openworld_bench  # loads torch: only when the benchmark runs

    run_openworld_bench(args.library, out=args.out, split=args.split, targets=args.targets)
    return 0
