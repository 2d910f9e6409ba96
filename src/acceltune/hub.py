"""Whether the Hugging Face Hub may be asked for anything: the one reading of the offline switches."""

from __future__ import annotations

import os

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")  # what huggingface_hub itself accepts


def offline() -> bool:
    """True when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set to 1/true/yes/on (any case).

    Read at call time, not import time, so a variable set by a test or a notebook cell counts."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in OFFLINE_VARIABLES)
