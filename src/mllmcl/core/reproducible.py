"""Reproducible CPU arithmetic: the same command gives the same numbers on machines of one kind.

PyTorch, MKL and oneDNN each pick their kernels from the CPU they find: AVX-512 code on a CPU that has it,
AVX2 code on one that does not. The kernels add and multiply in different orders, so their floating-point
results differ in the last bits, and training amplifies those bits: the same `mllmcl run` can train the
same expert to accuracies tens of points apart with AVX-512 and with AVX2 kernels (docs/results.md,
"Determinism"). So the `mllmcl` command pins all three to their AVX2 code paths before torch loads, unless
told otherwise:

    ATEN_CPU_CAPABILITY=avx2   PyTorch's own vectorised kernels (reductions, softmax, norms, activations)
    MKL_CBWR=AVX2              MKL's matrix products (conditional numerical reproducibility)
    ONEDNN_MAX_CPU_ISA=AVX2    oneDNN's kernels

A variable the user has set is kept; `MLLMCL_NATIVE_KERNELS=1` skips the pinning (faster on AVX-512 CPUs).
Pinning removes the instruction set from the arithmetic, not every difference between machines: the thread
count (`threads` in the run config), library versions and the CPU itself still matter (MKL promises its
reproducible mode on Intel processors only, so CPUs of different vendors or models need not agree;
docs/results.md, "Determinism", lists what is checked). results.json records all of it, the CPU included. GPU
arithmetic is not affected by any of this. Pinned oneDNN has no fast bf16 path (about 1000x slower than
float32 on a CPU), so the engine refuses bf16 training on a pinned CPU, and `mllmcl bench scale`, which times
bf16, is not pinned.
"""
from __future__ import annotations

import os
import platform
import sys

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_cpu_kernels() -> bool:
    """Set the pinning variables (those not set already) if torch is not loaded yet; returns whether the
    process's kernels are pinned (False once torch is loaded unpinned, or with MLLMCL_NATIVE_KERNELS=1)."""
    if os.environ.get("MLLMCL_NATIVE_KERNELS", "") not in ("", "0"):
        return False
    if "torch" not in sys.modules:
        for key, value in PINNED.items():
            os.environ.setdefault(key, value)
    return kernels_pinned()


def kernels_pinned() -> bool:
    return all(os.environ.get(key, "").lower() == value.lower() for key, value in PINNED.items())


def cpu_description() -> dict:
    """The CPU's vendor and model as the OS names them (Linux: /proc/cpuinfo; elsewhere what `platform`
    knows), so that two results.json files tell whether they came from the same kind of processor."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if not key and fields:
                    break  # the first processor's block is enough
                if key in ("vendor_id", "model name", "cpu family", "model", "flags"):
                    fields[key] = value.strip()
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {"vendor": fields.get("vendor_id") or platform.machine(),
            "model": fields.get("model name") or platform.processor() or "unknown",
            "family": fields.get("cpu family"), "model_number": fields.get("model"),
            "avx512": "avx512f" in flags if flags else None}


def kernel_settings() -> dict:
    """What the arithmetic of this process depends on besides the code: for results.json."""
    import torch  # this module must load before torch (pin_cpu_kernels); torch is loaded by now

    return {"pinned": kernels_pinned(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **{key: os.environ.get(key) for key in PINNED}, "threads": torch.get_num_threads(),
            "cpu": cpu_description()}
