"""CPU facts (usable cores, instruction-set flags) without importing torch, so the ONNX path stays light;
giving freed heap memory back to the OS; keeping numpy's BLAS off the model's cores."""

from __future__ import annotations

import os
import platform
from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def trim_heap() -> None:
    """Return freed heap pages to the OS (glibc's malloc_trim; a no-op elsewhere).

    glibc keeps the pages of freed activations (the longest batch's high-water mark) in the process:
    trimmed after training, evaluation and the report start from the live set, not from that mark.
    """
    if platform.system() != "Linux":
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # musl and other C libraries: nothing to trim
        pass


@lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """A context in which numpy's BLAS runs on the calling thread alone.

    For the small matrix products that follow each model call (the out-of-scope scores): OpenBLAS's
    worker threads busy-wait for a while after every call, so between two ONNX Runtime or torch calls
    they hold the cores the model's own threads need. Measured on 2 cores: 1 ms of such products made
    each 64-message int8 batch take twice as long (docs/benchmarks.md). threadpoolctl arbitrates between
    threads (one thread at a time may limit a process-wide pool; an OpenMP pool is limited per thread)."""
    return _blas_controller().limit(limits=1, user_api="blas")
