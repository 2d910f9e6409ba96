"""The Hugging Face Hub as acceltune sees it: whether it may be asked at all (the offline switches, read
in one place) and which names are worth asking it for (repository ids)."""

from __future__ import annotations

import os
import re

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")  # what huggingface_hub itself accepts


def offline() -> bool:
    """True when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set to 1/true/yes/on (any case).

    Read at call time, not import time, so a variable set by a test or a notebook cell counts."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in OFFLINE_VARIABLES)


def looks_like_repo_id(name: str) -> bool:
    """'name' or 'owner/name' as the Hub spells repository ids: worth asking the Hub for when no local path matches."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name) is not None
