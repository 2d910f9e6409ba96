"""The review loop: handed-off and low-confidence messages out to a CSV that `acceltune train` reads once
a person has filled in the ``label`` column, so the next model learns what this one did not.

Columns: ``text`` and ``label`` (empty: `acceltune train` refuses rows without one and names them, so nothing
unlabelled is learnt by accident), then what helps the labeller: ``suggested_label`` (the model's intent,
or the out-of-scope intent), ``confidence``, ``reason``, ``conversation_id``, ``at`` (UTC). Extra columns are
ignored by `acceltune train`, which picks ``text`` and ``label`` by name.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

from acceltune.assistant.store import ConversationStore
from acceltune.errors import UserError

COLUMNS = ("text", "label", "suggested_label", "confidence", "reason", "conversation_id", "at")


def export_for_review(store: ConversationStore, output: str | Path, *, overwrite: bool = False) -> int:
    """Write the review CSV atomically (never a half-written file); the number of messages written."""
    out = Path(output)
    if out.exists() and not overwrite:
        raise UserError(f"--output {output} exists: pass --overwrite to replace it, or choose another file")
    if out.is_dir():
        raise UserError(f"--output {output} is a directory: name a .csv file")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for turn in store.for_review():
                writer.writerow([turn.message, "", turn.intent, f"{turn.confidence:.4f}",
                                 turn.reason or ("low_confidence" if turn.low_confidence else ""),
                                 turn.conversation_id, turn.at.isoformat(timespec="seconds")])
                n += 1
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
