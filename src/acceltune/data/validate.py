"""Validation of a loaded table: which columns hold the text and the labels, that no row lacks them,
what the labels are; and the wording that names offending rows and labels in the messages.

Every check runs over Arrow batches of BATCH rows, so memory stays bounded by the batch size.
"""

from __future__ import annotations

import codecs
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from acceltune.config import DataArgs
from acceltune.errors import UserError

TEXT_CANDIDATES = ("text", "sentence", "content", "message", "utterance", "question")
LABEL_CANDIDATES = ("label", "labels", "category", "class", "intent", "target")
BATCH = 10_000
"""Rows per Arrow batch in the validation and indexing passes (bounds their memory)."""
SHOWN = 5  # how many offending rows/labels a message names


# --------------------------------------------------------------------------- columns and labels


@dataclass
class Scan:
    """What one pass over a labeled table found: the columns to use, the label feature and the label counts."""

    name: str
    text: str
    pair: str | None
    label: str
    feature: Any
    counts: Counter
    rows: int


def scan_labeled(ds, name: str, args: DataArgs, multi: bool) -> Scan:
    """One batched pass: resolve columns, reject empty texts and missing labels, count the labels."""
    cols = ds.column_names
    if len(ds) == 0:
        raise UserError(f"{name} has no data rows: pass a file that has some")
    text = resolve_column(cols, args.text_column, TEXT_CANDIDATES, "text", "--text-column", name)
    pair = (resolve_column(cols, args.text_pair_column, (), "text pair", "--text-pair-column", name)
            if args.text_pair_column else None)
    label = resolve_column(cols, args.label_column, LABEL_CANDIDATES, "label", "--label-column", name)
    if label in (text, pair):
        raise UserError(f"{name}: column {label!r} cannot be both the text and the label: pass --text-column and --label-column")
    feature = ds.features[label]
    counts: Counter = Counter()
    bad = {"text": [], "pair": [], "label": []}
    nbad = {"text": 0, "pair": 0, "label": 0}
    row = 0
    for tbl in iter_arrow(ds, [c for c in (text, pair, label) if c]):
        collect_rows(empty_mask(as_text(tbl.column(text), text, name), text, name), row, bad["text"], nbad, "text")
        if pair:
            collect_rows(empty_mask(as_text(tbl.column(pair), pair, name), pair, name), row, bad["pair"], nbad, "pair")
        if multi:
            missing, _, values = multi_values(tbl.column(label), feature, label, name, args.label_delimiter)
            vc = pc.value_counts(values) if len(values) else None
        else:
            strings = label_strings(tbl.column(label), feature, label, name)
            missing = pc.is_null(strings).to_numpy(zero_copy_only=False)
            vc = pc.value_counts(pc.drop_null(strings)) if len(strings) - strings.null_count else None
        collect_rows(missing, row, bad["label"], nbad, "label")
        if vc is not None:
            for v, c in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
                counts[v] += c
        row += tbl.num_rows
    if nbad["text"]:
        raise UserError(f"empty text (column {text!r}) in {describe_rows(bad['text'], nbad['text'])} of {name}: remove or fill these rows")
    if nbad["pair"]:
        raise UserError(f"empty text pair (column {pair!r}) in {describe_rows(bad['pair'], nbad['pair'])} of {name}: remove or fill these rows")
    if nbad["label"]:
        raise UserError(f"missing label (column {label!r}) in {describe_rows(bad['label'], nbad['label'])} of {name}: remove these rows or fill in their labels")
    if not counts:
        raise UserError(f"{name} has no labels in column {label!r}")
    return Scan(name=name, text=text, pair=pair, label=label, feature=feature, counts=counts, rows=row)


def resolve_column(cols: list[str], wanted: str | None, candidates: tuple, what: str, flag: str, name: str) -> str:
    """The column asked for with ``flag`` (exact, else the one case-insensitive match), else the first candidate."""
    shown = ", ".join(cols[:30]) + (f", ... ({len(cols)} in all)" if len(cols) > 30 else "")
    if wanted is not None:
        if wanted in cols:
            return wanted
        ci = [c for c in cols if c.strip().lower() == wanted.strip().lower()]
        if len(ci) == 1:
            return ci[0]
        raise UserError(f"column {wanted!r} not found in {name}; columns are: {shown} (use {flag})")
    for cand in candidates:
        for c in cols:
            if c.strip().lower() == cand:
                return c
    raise UserError(f"no {what} column found in {name} (looked for {', '.join(candidates)}); columns are: {shown} (use {flag})")


def as_text(arr, column: str, name: str) -> pa.Array:
    """A text column as a string array (numbers and booleans cast); anything else is a UserError."""
    arr = combine(arr)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_large_string(arr.type) or pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) \
            or pa.types.is_boolean(arr.type) or pa.types.is_null(arr.type):
        return pc.cast(arr, pa.string())
    raise UserError(f"column {column!r} of {name} holds {type_name(arr.type)} values, not text: pass the text column with --text-column")


def empty_mask(arr: pa.Array, column: str, name: str) -> np.ndarray:
    """True for rows whose text is missing or only whitespace."""
    return pc.fill_null(pc.equal(trimmed(arr, column, name), ""), True).to_numpy(zero_copy_only=False)


def trimmed(arr: pa.Array, column: str, name: str) -> pa.Array:
    """Strings without surrounding whitespace. Arrow's JSON reader takes bytes as UTF-8 unchecked, so
    text in another encoding first fails here, and is named here."""
    try:
        return pc.utf8_trim_whitespace(arr)
    except pa.ArrowInvalid as e:
        if "utf8" not in str(e).lower():
            raise
        raise UserError(f"column {column!r} of {name} holds text that is not valid UTF-8: {encoding_fix('utf-8')}") from None


def label_strings(arr, feature, column: str, name: str) -> pa.Array:
    """Single-label values as trimmed strings; null where missing (null, empty, ClassLabel -1)."""
    import datasets

    arr = combine(arr)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t = arr.type
    if isinstance(feature, datasets.ClassLabel):
        ids = pc.if_else(pc.less(arr, 0), pa.scalar(None, t), arr)
        return pc.take(pa.array(feature.names, pa.string()), ids)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        raise UserError(f"label column {column!r} of {name} holds lists: pass --multi-label for a multi-label task")
    if pa.types.is_floating(t):
        finite = pc.drop_null(arr)
        if len(finite) and not pc.all(pc.equal(pc.floor(finite), finite)).as_py():
            raise UserError(f"label column {column!r} of {name} holds fractional numbers (e.g. "
                            f"{pc.filter(finite, pc.not_equal(pc.floor(finite), finite))[0].as_py()}): acceltune trains "
                            f"classifiers; pass the column of class labels with --label-column")
        arr = pc.cast(arr, pa.int64())
    elif pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_null(t):
        pass
    elif not pa.types.is_string(t):
        raise UserError(f"label column {column!r} of {name} holds {type_name(t)} values: labels must be strings or integers")
    s = trimmed(pc.cast(arr, pa.string()), column, name)
    return pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)


def multi_values(arr, feature, column: str, name: str, delimiter: str):
    """Multi-label values as (missing row mask, parent row of each value, value strings)."""
    import datasets

    arr = combine(arr)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        lists = arr
        inner = getattr(feature, "feature", None)
        values = lists.flatten()
        if isinstance(inner, datasets.ClassLabel):
            values = pc.take(pa.array(inner.names, pa.string()), values)
        elif pa.types.is_floating(values.type) or pa.types.is_integer(values.type) or pa.types.is_boolean(values.type) \
                or pa.types.is_string(values.type) or pa.types.is_large_string(values.type) or pa.types.is_null(values.type):
            values = pc.cast(label_strings(values, None, column, name) if pa.types.is_floating(values.type) else values, pa.string())
        else:
            raise UserError(f"label column {column!r} of {name} holds lists of {values.type}: labels must be strings or integers")
        missing = pc.is_null(lists).to_numpy(zero_copy_only=False)
    else:
        strings = label_strings(arr, feature, column, name)
        missing = pc.is_null(strings).to_numpy(zero_copy_only=False)
        lists = pc.split_pattern(strings, delimiter)
        values = lists.flatten()
    parents = pc.list_parent_indices(lists)
    values = trimmed(pc.cast(values, pa.string()), column, name)
    keep = pc.fill_null(pc.not_equal(values, ""), False)
    return missing, pc.filter(parents, keep).to_numpy(zero_copy_only=False), pc.filter(values, keep)


# --------------------------------------------------------------------------- batches and message wording


def type_name(t: pa.DataType) -> str:
    """An Arrow type as a message names it."""
    if isinstance(t, pa.BaseExtensionType) and "json" in str(t).lower():
        return "mixed-type (e.g. strings and lists)"
    return str(t)


def iter_arrow(ds, columns: list[str]) -> Iterator[pa.Table]:
    """``columns`` of ``ds`` as Arrow tables of BATCH rows."""
    yield from ds.select_columns(columns).with_format("arrow").iter(batch_size=BATCH)


def combine(arr) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def collect_rows(mask: np.ndarray, start: int, shown: list[int], counts: dict, key: str) -> None:
    """Count the rows of one batch where ``mask`` holds, keeping the first SHOWN row numbers (from 1) to name."""
    hits = np.flatnonzero(mask)
    if len(hits):
        counts[key] += len(hits)
        shown.extend((hits[: SHOWN - len(shown)] + start + 1).tolist() if len(shown) < SHOWN else [])


def describe_rows(shown: list[int], n: int) -> str:
    """'3 rows (rows 2, 5, 9; data rows counted from 1)'."""
    more = f" and {n - len(shown)} more" if n > len(shown) else ""
    return f"{n} row{'s' if n != 1 else ''} (row{'s' if n != 1 else ''} {', '.join(map(str, shown))}{more}; data rows counted from 1)"


def first_few(items: list[str], k: int = SHOWN) -> str:
    """The first ``k`` items, and how many more there are."""
    return ", ".join(items[:k]) + (f" (and {len(items) - k} more)" if len(items) > k else "")


def sort_labels(names: Iterable[str]) -> list[str]:
    """Label order (class i is the i-th): numerically when every label is an integer, else alphabetically."""
    names = list(names)
    if names and all(re.fullmatch(r"[+-]?\d+", n) for n in names):
        return sorted(names, key=lambda n: (int(n), n))
    return sorted(names)


def encoding_fix(encoding: str) -> str:
    """The way forward for a file that does not decode as ``encoding``."""
    other = "latin-1" if codecs.lookup(encoding).name != "iso8859-1" else "utf-8"
    return f"pass the file's encoding, e.g. --encoding {other} (or cp1252), or re-save it as UTF-8"


def first_line(e: BaseException) -> str:
    """A library exception's first line, short enough for a one-line error."""
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]
