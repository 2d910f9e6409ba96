"""CPU facts (usable cores, instruction-set flags) without importing torch, so the ONNX path stays light;
and giving freed heap memory back to the OS."""

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
