"""Reproducible CPU arithmetic: the same command gives the same numbers on any x86-64 machine with AVX2.

PyTorch, MKL and oneDNN each pick their kernels from the CPU they find: AVX-512 code on a CPU that has it,
AVX2 code on one that does not. The kernels add and multiply in different orders, so their floating-point
results differ in the last bits, and training amplifies those bits: the same `mllmcl run` trained the same
RS expert to 40.5% with PyTorch's AVX-512 kernels and to 69.5% with its AVX2 kernels on one machine (docs/
results.md, "Determinism"). So the `mllmcl` command pins all three to their AVX2 code paths before torch
loads, unless told otherwise:

    ATEN_CPU_CAPABILITY=avx2   PyTorch's own vectorised kernels (reductions, softmax, norms, activations)
    MKL_CBWR=AVX2              MKL's matrix products (conditional numerical reproducibility)
    ONEDNN_MAX_CPU_ISA=AVX2    oneDNN's kernels

A variable the user has set is kept; `MLLMCL_NATIVE_KERNELS=1` skips the pinning (faster on AVX-512 CPUs,
reproducible only on CPUs of the same kind). What remains different between machines is the thread count
(`threads` in the run config) and library versions; results.json records all of it. GPU arithmetic is not
affected by any of this. Pinned oneDNN has no fast bf16 path (about 1000x slower than float32 on a CPU), so
the engine refuses bf16 training on a pinned CPU, and `mllmcl bench scale`, which times bf16, is not pinned.
"""
from __future__ import annotations

import os
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


def kernel_settings() -> dict:
    """What the arithmetic of this process depends on besides the code: for results.json."""
    import torch

    return {"pinned": kernels_pinned(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **{key: os.environ.get(key) for key in PINNED}, "threads": torch.get_num_threads()}
