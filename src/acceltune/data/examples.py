"""File -> examples: load a labeled or unlabeled table, validate it, split it and index its labels.

Formats (by extension): .csv, .tsv, .json/.jsonl, .parquet, .txt (one text per line, or delimited
with --delimiter), a directory written by ``datasets.save_to_disk`` (or holding train/validation/test
data files), else a Hub dataset id when online. CSV/TSV/JSON/Parquet go through ``datasets``'
Arrow builders (memory-mapped, so files bigger than RAM work); only custom-delimited text files use
the line parser here, which streams into an Arrow file in the ``datasets`` cache. Validation and
label indexing run over Arrow batches, so memory stays bounded by the batch size.

Every dataset returned for training/evaluation has exactly the columns ``text`` (str),
``text_pair`` (str, pair tasks only) and ``labels`` (class index, a ``ClassLabel`` feature that
carries the label names, for single-label; a multi-hot list[float] for multi-label).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from acceltune.config import DataArgs
from acceltune.errors import UserError

if TYPE_CHECKING:  # datasets is imported lazily: it costs a second at CLI start-up
    import datasets

log = logging.getLogger("acceltune.data")

TEXT_CANDIDATES = ("text", "sentence", "content", "message", "utterance", "question")
LABEL_CANDIDATES = ("label", "labels", "category", "class", "intent", "target")
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}
BATCH = 10_000
"""Rows per Arrow batch in the validation and indexing passes (bounds their memory)."""
_VERSION = "1"
"""Bump when the cached output of the parser or the indexing map changes meaning."""
_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json",
            ".parquet": "parquet", ".pq": "parquet", ".txt": "text"}
_SHOW = 5  # how many offending rows/labels a message names


@dataclass
class Splits:
    train: "datasets.Dataset | None"
    validation: "datasets.Dataset | None"
    test: "datasets.Dataset | None"
    labels: list[str]
    """Label names; class i is labels[i]. Sorted (numerically when all are integers) unless given."""
    multi_label: bool
    text_pair: bool
    notes: list[str] = field(default_factory=list)
    """Human-readable notes to print (skipped lines, splits made, subsampling)."""


# --------------------------------------------------------------------------- public API


def load_splits(args: DataArgs, *, seed: int = 42) -> Splits:
    """Train/validation/test datasets for `acceltune train` (see the module docstring for columns)."""
    notes: list[str] = []
    train_path: str | None = args.train
    test_path: str | None = args.test
    if train_path is None:
        demo = _demo_dir()
        train_path = str(demo / "train.csv")
        if test_path is None and (demo / "test.csv").is_file():
            test_path = str(demo / "test.csv")
        notes.append(f"no --train given: using the packaged demo dataset ({demo})")

    src, n = _read(train_path, args.delimiter, args.encoding, args.column_names, args.on_bad_lines)
    notes += n
    given: dict[str, tuple[Any, str]] = {}  # split -> (Dataset, display name)
    if isinstance(src, dict):
        name = _pick_split(src, "train", train_path)
        given["train"] = (src[name], f"{train_path} [{name}]")
        for split, path in (("validation", args.validation), ("test", test_path)):
            if path is None and (other := _find_split(src, split)):
                given[split] = (src[other], f"{train_path} [{other}]")
                notes.append(f"using the '{other}' split of {train_path} as {split} data")
    else:
        given["train"] = (src, train_path)
    for split, path in (("validation", args.validation), ("test", test_path)):
        if path is None:
            continue
        s, n = _read(path, args.delimiter, args.encoding, args.column_names, args.on_bad_lines)
        notes += n
        if isinstance(s, dict):
            name = _pick_split(s, split, path)
            given[split] = (s[name], f"{path} [{name}]")
        else:
            given[split] = (s, path)

    multi = bool(args.multi_label)
    scans = {split: _scan(ds, name, args, multi) for split, (ds, name) in given.items()}
    train_scan = scans["train"]
    found = set(train_scan.counts)
    if not multi and len(found) < 2:
        raise UserError(f"{train_scan.name} has a single label ({', '.join(map(repr, found))}): a classifier needs at "
                        f"least 2 classes; check --label-column or add examples of the other classes")
    for split in ("validation", "test"):
        if split in scans and (extra := set(scans[split].counts) - found):
            raise UserError(f"{scans[split].name} has label(s) that never occur in the training data: "
                            f"{_few(_sort_labels(extra))}: remove those rows or add examples of them to the training data")
    labels = _sort_labels(found)

    out = {split: _to_examples(ds, scans[split], labels, args) for split, (ds, _) in given.items()}
    train = out["train"]

    # Held-out splits made from the training data: test first (a share of all), then validation.
    wanted = [(s, f) for s, f in (("test", args.test_fraction), ("validation", args.validation_fraction))
              if s not in out and f > 0]
    if wanted:
        _check_splittable(train_scan, wanted, multi)
        idx = np.arange(len(train))
        y = None if multi else train.data.column("labels").to_numpy()
        remaining = 1.0
        for split, frac in wanted:
            # sklearn's own rounding of a fractional test_size, so splits below the cap stay as they were.
            size = math.ceil(frac / remaining * len(idx))
            capped = size > args.max_held_out
            keep, held = _split_indices(idx, None if y is None else y[idx], min(size, args.max_held_out), seed,
                                        train_scan, split, frac)
            out[split] = _take(train, np.sort(held))
            idx = np.sort(keep)
            remaining -= frac
            how = "random (multi-label data cannot be stratified)" if multi else "stratified by label"
            amount = f"{len(held)} examples (--max-held-out; {frac:.0%} would be {size})" if capped else f"{frac:.0%}"
            notes.append(f"made {split} split: {amount} of {train_scan.name}, {how}, seed {seed} ({len(held)} examples)")
        train = _take(train, idx)

    if args.max_examples is not None and args.max_examples < len(train):
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.permutation(len(train))[: args.max_examples])
        notes.append(f"using {args.max_examples} of {len(train)} training examples (--max-examples, seed {seed})")
        train = _take(train, keep)

    return Splits(train=train, validation=out.get("validation"), test=out.get("test"), labels=labels,
                  multi_label=multi, text_pair=args.text_pair_column is not None, notes=notes)


def load_labeled(path: str, args: DataArgs, labels: list[str] | None = None) -> "datasets.Dataset":
    """One labeled file (``acceltune evaluate --data FILE``), with the same columns as load_splits gives.

    With ``labels`` (the model's), a label the model does not know is a UserError; without, the labels
    are the file's, sorted, and (single-label) readable from ``ds.features["labels"].names``.
    """
    src, notes = _read(path, args.delimiter, args.encoding, args.column_names, args.on_bad_lines)
    name = path
    if isinstance(src, dict):
        split = _pick_split(src, "test", path)
        src, name = src[split], f"{path} [{split}]"
    for note in notes:
        log.warning(note)
    scan = _scan(src, name, args, bool(args.multi_label))
    if labels is not None:
        labels = [str(l) for l in labels]
        unknown = set(scan.counts) - set(labels)
        if unknown:
            raise UserError(f"{name} has label(s) the model does not know: {_few(_sort_labels(unknown))}; the model's "
                            f"labels are: {_few(labels, 20)}: remove those rows, or evaluate a model trained on these labels")
    else:
        labels = _sort_labels(scan.counts)
    return _to_examples(src, scan, labels, args)


def load_texts(path: str, text_column: str | None, text_pair_column: str | None = None, *, delimiter: str | None = None,
               encoding: str = "utf-8", column_names: str | list[str] | None = None
               ) -> tuple[list[str], list[str] | None, "datasets.Dataset"]:
    """Texts to classify (``acceltune predict --input FILE|-``): texts, pairs (or None), and the raw table.

    ``-`` reads stdin: JSON Lines, CSV (a header naming the text column) or plain text, one text per line.
    A .txt file without --delimiter is one text per line too; blank lines are no inputs and are dropped.
    """
    table, notes, plain = _load_table(path, delimiter, encoding, column_names, "warn", text_hint=text_column)
    for note in notes:
        log.warning(note)
    if plain:  # one text per line: blank lines are not inputs
        col = table.data.column("text") if table._indices is None else None
        if col is not None:
            blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(col), ""), True).to_numpy(zero_copy_only=False)
            if blank.any():
                table = table.select(np.flatnonzero(~blank))
    cols = table.column_names
    tcol = _resolve_column(cols, text_column, TEXT_CANDIDATES, "text", "--text-column", path)
    pcol = _resolve_column(cols, text_pair_column, (), "text pair", "--text-pair-column", path) if text_pair_column else None
    texts: list[str] = []
    pairs: list[str] | None = [] if pcol else None
    bad: dict[str, list[int]] = {tcol: [], **({pcol: []} if pcol else {})}
    counts = {c: 0 for c in bad}
    row = 0
    for tbl in _iter_arrow(table, [tcol] + ([pcol] if pcol else [])):
        for c, out in ((tcol, texts), (pcol, pairs)):
            if c is None:
                continue
            arr = _as_text(tbl.column(c), c, path)
            _collect_rows(_empty_mask(arr), row, bad[c], counts, c)
            out.extend(arr.to_pylist())
        row += tbl.num_rows
    for c in bad:
        if counts[c]:
            raise UserError(f"empty {c!r} in {_rows(bad[c], counts[c])} of {path}: remove or fill these rows")
    if not texts:
        raise UserError(f"{path} holds no texts to classify")
    return texts, pairs, table


def load_table(path: str, *, delimiter: str | None = None, encoding: str = "utf-8",
               column_names: str | list[str] | None = None, on_bad_lines: str = "warn") -> tuple["datasets.Dataset", list[str]]:
    """The raw table in ``path`` (all its columns) and notes such as skipped bad lines."""
    table, notes, _ = _load_table(path, delimiter, encoding, column_names, on_bad_lines)
    return table, notes


# --------------------------------------------------------------------------- reading


def _load_table(path, delimiter, encoding, column_names, on_bad_lines, text_hint=None):
    """(Dataset, notes, plain): plain is True for one-text-per-line input (a .txt file or plain stdin)."""
    path = str(path)
    if path == "-":
        ds, notes, plain = _read_stdin(delimiter, encoding, column_names, on_bad_lines, text_hint)
        return ds, notes, plain
    src, notes = _read(path, delimiter, encoding, column_names, on_bad_lines)
    if isinstance(src, dict):
        split = _pick_split(src, "train", path)
        notes.append(f"using the '{split}' split of {path} (splits: {', '.join(src)})")
        src = src[split]
    plain = Path(path).suffix.lower() == ".txt" and delimiter is None
    return src, notes, plain


def _read(path: str, delimiter: str | None, encoding: str, column_names, on_bad_lines: str):
    """A Dataset, or a {split: Dataset} dict for a DatasetDict/Hub dataset/data directory, and notes."""
    import datasets

    path = str(path)
    names = _parse_column_names(column_names)
    encoding = _check_encoding(encoding)
    if on_bad_lines not in ("warn", "error"):
        raise UserError(f"--on-bad-lines must be warn or error, got {on_bad_lines!r}")
    if delimiter == "":
        raise UserError("--delimiter must not be empty")
    if delimiter is not None:
        delimiter = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(delimiter, delimiter)
    p = Path(path).expanduser()
    if p.is_dir():
        return _read_dir(p, path, delimiter, encoding, names, on_bad_lines)
    if not p.exists():
        return _read_hub(path), []
    if not p.is_file() or not os.access(p, os.R_OK):
        raise UserError(f"cannot read {path}: check that it is a file and that you have permission to read it")
    if p.stat().st_size == 0:
        raise UserError(f"{path} is empty: pass a file with data")
    ext = p.suffix.lower()
    kind = _FORMATS.get(ext)
    if kind == "text" and delimiter is None and names and len(names) > 1:
        raise UserError(f"--column-names {','.join(names)} needs --delimiter for {path}: a .txt file without one is one text per line")
    if kind in (None, "text") and delimiter is not None:
        return _read_delimited(p, path, delimiter, encoding, names, on_bad_lines)
    if kind is None:
        raise UserError(f"cannot tell the format of {path} from its extension: use .csv, .tsv, .json, .jsonl, .parquet "
                        f"or .txt, or pass --delimiter for a delimited text file")
    if kind == "csv":
        return _read_csv(p, path, delimiter or ("\t" if ext == ".tsv" else ","), encoding, names, on_bad_lines)
    if kind == "text":
        try:
            ds = datasets.load_dataset("text", data_files=str(p), split="train", encoding=encoding)
        except Exception as e:
            raise _load_error(e, path, encoding, "text") from None
        if names:
            ds = ds.rename_column("text", names[0])
        return ds, []
    if kind == "json":
        kw = {} if encoding in ("utf-8", "utf-8-sig") else {"encoding": encoding}
        try:
            return datasets.load_dataset("json", data_files=str(p), split="train", **kw), []
        except Exception as e:
            raise _load_error(e, path, encoding, "JSON (one object per line, or a list of objects)") from None
    try:
        return datasets.load_dataset("parquet", data_files=str(p), split="train"), []
    except Exception as e:
        raise _load_error(e, path, encoding, "Parquet") from None


def _read_csv(p: Path, path: str, sep: str, encoding: str, names, on_bad_lines: str):
    """CSV/TSV through datasets' memory-mapped builder, every column read as a string."""
    import datasets
    import pandas as pd

    header_kw = {"names": names, "header": None} if names else {}
    try:  # the header alone, to read every column as a string (no per-chunk type guessing, no "1.0" labels)
        cols = list(pd.read_csv(p, sep=sep, encoding=encoding, nrows=0, engine="python" if len(sep) > 1 else "c",
                                **header_kw).columns)
    except Exception as e:
        raise _load_error(e, path, encoding, "CSV") from None
    cols = [str(c) for c in cols]  # pandas renames duplicates (text, text.1)
    features = datasets.Features({c: datasets.Value("string") for c in cols})
    kw: dict[str, Any] = dict(sep=sep, encoding=encoding, keep_default_na=False, features=features,
                              on_bad_lines=on_bad_lines)
    if names:
        kw["column_names"] = names
    if len(sep) > 1:
        kw["engine"] = "python"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = datasets.load_dataset("csv", data_files=str(p), split="train", **kw)
        except Exception as e:
            raise _load_error(e, path, encoding, "CSV") from None
    bad = []
    for w in caught:
        m = re.findall(r"Skipping line (\d+)", str(w.message))
        bad += [int(x) for x in m]
    return ds, _bad_line_notes(ds, path, sorted(set(bad)))


def _bad_line_notes(ds, path: str, bad: list[int]) -> list[str]:
    """Notes for skipped lines; kept beside datasets' cache file, since a cached load re-parses nothing."""
    sidecar = Path(ds.cache_files[0]["filename"] + ".acceltune-bad-lines.json") if ds.cache_files else None
    if bad and sidecar is not None:
        try:
            sidecar.write_text(json.dumps(bad))
        except OSError:
            pass
    elif not bad and sidecar is not None and sidecar.is_file():
        try:
            bad = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            bad = []
    return [_bad_note(path, bad)] if bad else []


def _bad_note(path: str, bad: list[int]) -> str:
    shown = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
    return f"{path}: skipped {len(bad)} bad line{'s' if len(bad) != 1 else ''}: {shown}"


def _read_delimited(p: Path, path: str, delimiter: str, encoding: str, names, on_bad_lines: str):
    """A custom-delimited text file, parsed line by line into an Arrow file in the datasets cache."""
    import datasets

    st = p.stat()
    key = _hash(["delimited", _VERSION, str(p.resolve()), st.st_size, st.st_mtime_ns, delimiter, encoding, names, on_bad_lines])
    cache = _cache_root() / "delimited"
    arrow, meta = cache / f"{key}.arrow", cache / f"{key}.json"
    if arrow.is_file() and meta.is_file():
        try:
            bad = json.loads(meta.read_text())["bad_lines"]
            return datasets.Dataset.from_file(str(arrow)), [_bad_note(path, bad)] if bad else []
        except Exception:
            pass  # a damaged cache entry: parse again
    cache.mkdir(parents=True, exist_ok=True)
    tmp = arrow.with_name(f"{arrow.name}.{os.getpid()}.tmp")
    bad: list[int] = []
    writer = None
    try:
        with open(p, encoding=_reading_encoding(encoding), newline="\n") as f:
            try:
                for batch in _delimited_batches(f, delimiter, names, on_bad_lines, path, bad):
                    if writer is None:
                        writer = pa.ipc.new_stream(str(tmp), batch.schema)
                    writer.write_batch(batch)
            except UnicodeDecodeError:
                raise _encoding_error(path, encoding) from None
        if writer is None:
            raise UserError(f"{path} has no data rows")
        writer.close()
        writer = None
        os.replace(tmp, arrow)
        meta.write_text(json.dumps({"path": str(p), "bad_lines": bad}))
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return datasets.Dataset.from_file(str(arrow)), [_bad_note(path, bad)] if bad else []


def _delimited_batches(lines: Iterable[str], delimiter: str, names, on_bad_lines: str, path: str, bad: list[int]
                       ) -> Iterator[pa.RecordBatch]:
    """Record batches of string columns. Extra delimiters belong to the first column (split on the last ones),
    so a text containing the delimiter survives in the usual text-first layout; blank lines are skipped."""
    cols: list[list[str]] | None = None
    n = 0
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip("\n").rstrip("\r")
        if lineno == 1:
            line = line.lstrip("\ufeff")
        if not line.strip():
            continue
        if names is None:  # the first line is the header
            names = [c.strip() for c in line.split(delimiter)]
            if len(set(names)) != len(names) or not all(names):
                raise UserError(f"the header of {path} ({line[:80]!r}) has empty or duplicate column names: "
                                f"pass --column-names, e.g. --column-names text,label, if the file has no header")
            continue
        if cols is None:
            cols = [[] for _ in names]
        k = len(names)
        fields = line.rsplit(delimiter, k - 1) if k > 1 else [line]
        if len(fields) < k:
            if on_bad_lines == "error":
                raise UserError(f"line {lineno} of {path} has {len(fields)} field(s), expected {k} separated by "
                                f"{delimiter!r}: {line[:60]!r}: fix or remove it, or pass --on-bad-lines warn to skip such lines")
            bad.append(lineno)
            continue
        for c, v in zip(cols, fields):
            c.append(v)
        n += 1
        if n == BATCH:
            yield pa.record_batch([pa.array(c, pa.string()) for c in cols], names=names)
            cols, n = None, 0
    if names is None:
        return
    if cols is not None and n:
        yield pa.record_batch([pa.array(c, pa.string()) for c in cols], names=names)


def _read_dir(p: Path, path: str, delimiter, encoding, names, on_bad_lines):
    import datasets

    if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
        try:
            loaded = datasets.load_from_disk(str(p))
        except Exception as e:
            raise UserError(f"cannot load the saved dataset in {path}: {_first_line(e)}") from None
        if isinstance(loaded, datasets.DatasetDict):
            return dict(loaded), []
        return loaded, []
    found: dict[str, Path] = {}
    for f in sorted(p.iterdir()):
        if f.is_file() and f.suffix.lower() in _FORMATS:
            for split, aliases in SPLIT_ALIASES.items():
                if f.stem.lower() in aliases and split not in found:
                    found[split] = f
    if "train" not in found and not found:
        raise UserError(f"directory {path} holds neither a dataset saved with save_to_disk nor train/validation/test "
                        f"data files (e.g. train.csv): pass a file")
    out, notes = {}, []
    for split, f in found.items():
        ds, n = _read(str(f), delimiter, encoding, names, on_bad_lines)
        out[split] = ds
        notes += n
    return out, notes


def _read_hub(path: str):
    """A Hub dataset id, when the path does not exist locally and we are online."""
    looks_like_id = re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", path) is not None and Path(path).suffix.lower() not in _FORMATS
    if not looks_like_id:
        raise UserError(f"{path}: no such file or directory")
    if _offline():
        raise UserError(f"{path}: no such file or directory (not tried as a Hub dataset id: HF_HUB_OFFLINE is set)")
    import datasets

    try:
        loaded = datasets.load_dataset(path)
    except Exception as e:
        raise UserError(f"{path}: no such file or directory, and loading it as a Hub dataset failed: {_first_line(e)}") from None
    if isinstance(loaded, datasets.DatasetDict):
        return dict(loaded)
    return loaded


def _read_stdin(delimiter, encoding, column_names, on_bad_lines, text_hint):
    """stdin: JSON Lines / a JSON list, CSV (header names the text column), delimited (--delimiter) or plain text."""
    import datasets
    import pandas as pd

    names = _parse_column_names(column_names)
    encoding = _check_encoding(encoding)
    stream = getattr(sys.stdin, "buffer", None)
    raw = stream.read() if stream is not None else sys.stdin.read()
    if isinstance(raw, bytes):
        try:
            text = raw.decode(_reading_encoding(encoding))
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise UserError(f"stdin is not valid {encoding} (byte 0x{raw[e.start]:02x} at offset {e.start}, line {line}): "
                            f"{_encoding_fix(encoding)}") from None
    else:
        text = raw
    lines = text.split("\n")
    first = next((l.strip() for l in lines if l.strip()), "")
    if not first:
        raise UserError("stdin is empty: pipe texts into it, one per line")

    def table(tbl: pa.Table):
        return datasets.Dataset(datasets.table.InMemoryTable(tbl))

    if first.startswith("[") or (first.startswith("{") and _is_json_object(first)):
        try:
            if first.startswith("["):
                rows = json.loads(text)
            else:
                rows = []
                for i, l in enumerate(lines, 1):
                    if l.strip():
                        try:
                            rows.append(json.loads(l))
                        except ValueError as e:
                            raise UserError(f"line {i} of stdin is not valid JSON ({e}): send one JSON object per line") from None
        except ValueError as e:
            raise UserError(f"stdin is not valid JSON ({e}): send one JSON object per line") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise UserError("stdin JSON must be objects, one per line (or a list of objects), e.g. {\"text\": \"...\"}")
        try:
            return table(pa.Table.from_pylist(rows)), [], False
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise UserError(f"stdin JSON has inconsistent values: {_first_line(e)}") from None
    if delimiter is not None and not (len(delimiter) == 1 and _csv_header(first, delimiter, names, text_hint)):
        bad: list[int] = []
        batches = list(_delimited_batches(lines, delimiter, names, on_bad_lines, "stdin", bad))
        if not batches:
            raise UserError("stdin has no data rows")
        return table(pa.Table.from_batches(batches)), [_bad_note("stdin", bad)] if bad else [], False
    sep = delimiter or ","
    if names or _csv_header(first, sep, None, text_hint):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                                 on_bad_lines=on_bad_lines, **({"names": names, "header": None} if names else {}))
            except Exception as e:
                raise UserError(f"stdin is not valid CSV: {_first_line(e)}: fix the line, or pass --on-bad-lines warn") from None
        bad = sorted({int(x) for w in caught for x in re.findall(r"Skipping line (\d+)", str(w.message))})
        return datasets.Dataset.from_pandas(df, preserve_index=False), [_bad_note("stdin", bad)] if bad else [], False
    texts = [l.rstrip("\r") for l in lines if l.strip()]
    texts[0] = texts[0].lstrip("\ufeff")
    return table(pa.table({"text": pa.array(texts, pa.string())})), [], True


def _csv_header(first: str, sep: str, names, text_hint) -> bool:
    """Does this first line look like a CSV header naming the text column?"""
    try:
        fields = [f.strip().lower() for f in next(csv.reader([first], delimiter=sep))]
    except (csv.Error, StopIteration):
        return False
    wanted = [text_hint.lower()] if text_hint else list(TEXT_CANDIDATES)
    return any(f in wanted for f in fields)


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


# --------------------------------------------------------------------------- validation


@dataclass
class _Scan:
    name: str
    text: str
    pair: str | None
    label: str
    feature: Any
    counts: Counter
    rows: int


def _scan(ds, name: str, args: DataArgs, multi: bool) -> _Scan:
    """One batched pass: resolve columns, reject empty texts and missing labels, count the labels."""
    cols = ds.column_names
    if len(ds) == 0:
        raise UserError(f"{name} has no rows")
    text = _resolve_column(cols, args.text_column, TEXT_CANDIDATES, "text", "--text-column", name)
    pair = (_resolve_column(cols, args.text_pair_column, (), "text pair", "--text-pair-column", name)
            if args.text_pair_column else None)
    label = _resolve_column(cols, args.label_column, LABEL_CANDIDATES, "label", "--label-column", name)
    if label in (text, pair):
        raise UserError(f"{name}: column {label!r} cannot be both the text and the label: pass --text-column and --label-column")
    feature = ds.features[label]
    counts: Counter = Counter()
    bad = {"text": [], "pair": [], "label": []}
    nbad = {"text": 0, "pair": 0, "label": 0}
    row = 0
    for tbl in _iter_arrow(ds, [c for c in (text, pair, label) if c]):
        _collect_rows(_empty_mask(_as_text(tbl.column(text), text, name)), row, bad["text"], nbad, "text")
        if pair:
            _collect_rows(_empty_mask(_as_text(tbl.column(pair), pair, name)), row, bad["pair"], nbad, "pair")
        if multi:
            missing, _, values = _multi_values(tbl.column(label), feature, label, name, args.label_delimiter)
            vc = pc.value_counts(values) if len(values) else None
        else:
            strings = _label_strings(tbl.column(label), feature, label, name)
            missing = pc.is_null(strings).to_numpy(zero_copy_only=False)
            vc = pc.value_counts(pc.drop_null(strings)) if len(strings) - strings.null_count else None
        _collect_rows(missing, row, bad["label"], nbad, "label")
        if vc is not None:
            for v, c in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
                counts[v] += c
        row += tbl.num_rows
    if nbad["text"]:
        raise UserError(f"empty text (column {text!r}) in {_rows(bad['text'], nbad['text'])} of {name}: remove or fill these rows")
    if nbad["pair"]:
        raise UserError(f"empty text pair (column {pair!r}) in {_rows(bad['pair'], nbad['pair'])} of {name}: remove or fill these rows")
    if nbad["label"]:
        raise UserError(f"missing label (column {label!r}) in {_rows(bad['label'], nbad['label'])} of {name}: remove these rows or fill in their labels")
    if not counts:
        raise UserError(f"{name} has no labels in column {label!r}")
    return _Scan(name=name, text=text, pair=pair, label=label, feature=feature, counts=counts, rows=row)


def _resolve_column(cols: list[str], wanted: str | None, candidates: tuple, what: str, flag: str, name: str) -> str:
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


def _as_text(arr, column: str, name: str) -> pa.Array:
    arr = _combine(arr)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_large_string(arr.type) or pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) \
            or pa.types.is_boolean(arr.type) or pa.types.is_null(arr.type):
        return pc.cast(arr, pa.string())
    raise UserError(f"column {column!r} of {name} holds {_type_name(arr.type)} values, not text: pass the text column with --text-column")


def _empty_mask(arr: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(arr), ""), True).to_numpy(zero_copy_only=False)


def _label_strings(arr, feature, column: str, name: str) -> pa.Array:
    """Single-label values as trimmed strings; null where missing (null, empty, ClassLabel -1)."""
    import datasets

    arr = _combine(arr)
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
        raise UserError(f"label column {column!r} of {name} holds {_type_name(t)} values: labels must be strings or integers")
    s = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
    return pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)


def _multi_values(arr, feature, column: str, name: str, delimiter: str):
    """Multi-label values as (missing row mask, parent row of each value, value strings)."""
    import datasets

    arr = _combine(arr)
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
            values = pc.cast(_label_strings(values, None, column, name) if pa.types.is_floating(values.type) else values, pa.string())
        else:
            raise UserError(f"label column {column!r} of {name} holds lists of {values.type}: labels must be strings or integers")
        missing = pc.is_null(lists).to_numpy(zero_copy_only=False)
    else:
        strings = _label_strings(arr, feature, column, name)
        missing = pc.is_null(strings).to_numpy(zero_copy_only=False)
        lists = pc.split_pattern(strings, delimiter)
        values = lists.flatten()
    parents = pc.list_parent_indices(lists)
    values = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
    keep = pc.fill_null(pc.not_equal(values, ""), False)
    return missing, pc.filter(parents, keep).to_numpy(zero_copy_only=False), pc.filter(values, keep)


# --------------------------------------------------------------------------- examples and splits


def _to_examples(ds, scan: _Scan, labels: list[str], args: DataArgs):
    """The dataset with exactly text[, text_pair], labels (a batched Arrow map, cached in the datasets cache)."""
    import datasets

    multi = bool(args.multi_label)
    value_set = pa.array(labels, pa.string())
    L = len(labels)
    feats = {"text": datasets.Value("string")}
    if scan.pair:
        feats["text_pair"] = datasets.Value("string")
    feats["labels"] = datasets.List(datasets.Value("float32")) if multi else datasets.ClassLabel(names=labels)
    features = datasets.Features(feats)

    def fn(tbl: pa.Table) -> pa.Table:
        cols = {"text": _as_text(tbl.column(scan.text), scan.text, scan.name)}
        if scan.pair:
            cols["text_pair"] = _as_text(tbl.column(scan.pair), scan.pair, scan.name)
        if multi:
            _, parents, values = _multi_values(tbl.column(scan.label), scan.feature, scan.label, scan.name, args.label_delimiter)
            hot = np.zeros((tbl.num_rows, L), dtype=np.float32)
            hot[parents, pc.index_in(values, value_set=value_set).to_numpy(zero_copy_only=False)] = 1.0
            offsets = pa.array(np.arange(0, tbl.num_rows * L + 1, L, dtype=np.int32))
            cols["labels"] = pa.ListArray.from_arrays(offsets, pa.array(hot.ravel()))
        else:
            strings = _label_strings(tbl.column(scan.label), scan.feature, scan.label, scan.name)
            cols["labels"] = pc.cast(pc.index_in(strings, value_set=value_set), pa.int64())
        return pa.table(cols)

    key = _hash(["examples", _VERSION, ds._fingerprint, scan.text, scan.pair, scan.label, multi,
                 args.label_delimiter if multi else None, labels])
    kw: dict[str, Any] = dict(batched=True, batch_size=BATCH, remove_columns=ds.column_names, features=features,
                              new_fingerprint=key)
    if ds.cache_files:  # never next to the user's data (load_from_disk): in the datasets cache
        kw["cache_file_name"] = str(_cache_root() / "examples" / f"{key}.arrow")
        (_cache_root() / "examples").mkdir(parents=True, exist_ok=True)
    with _quiet_progress():
        out = ds.with_format("arrow").map(fn, **kw)
    return out.with_format(None)


def _check_splittable(scan: _Scan, wanted: list[tuple[str, float]], multi: bool) -> None:
    """Fail early, naming the class, when a stratified split cannot put one example of each class everywhere."""
    flags = " and ".join(f"--{s}" for s, _ in wanted)
    n = scan.rows
    for split, frac in wanted:
        if math.ceil(frac * n) >= n:
            raise UserError(f"{scan.name} has {n} examples, too few to hold out a {frac:.0%} {split} split: add data or pass --{split} FILE")
    if multi:
        return
    need = 1 + len(wanted)
    small = sorted(((c, l) for l, c in scan.counts.items() if c < max(2, need)), key=lambda x: (x[0], x[1]))
    if small:
        c, l = small[0]
        more = f" (and {len(small) - 1} more such class{'es' if len(small) > 2 else ''})" if len(small) > 1 else ""
        raise UserError(f"class {l!r} has only {c} example{'s' if c != 1 else ''} in {scan.name}{more}: a stratified "
                        f"{'/'.join(s for s, _ in wanted)} split needs at least {max(2, need)} per class; remove or merge "
                        f"it, or pass {flags} files")
    k = len(scan.counts)
    rest = n
    for split, frac in wanted:
        size = math.ceil(frac * n)
        if size < k:
            raise UserError(f"a {frac:.0%} {split} split of {scan.name} has {size} example{'s' if size != 1 else ''}, fewer than its {k} classes: "
                            f"raise --{split}-fraction or pass --{split} FILE")
        rest -= size
    if rest < k:
        raise UserError(f"{scan.name} leaves {rest} training examples after the held-out splits, fewer than its {k} classes: "
                        f"lower the fractions or pass {flags} files")


def _split_indices(idx: np.ndarray, y, size: int, seed: int, scan: _Scan, split: str, frac: float):
    from sklearn.model_selection import train_test_split

    try:
        keep, held = train_test_split(idx, test_size=size, random_state=seed, shuffle=True, stratify=y)
    except ValueError as e:
        raise UserError(f"cannot make a stratified {frac:.0%} {split} split of {scan.name}: {_first_line(e)}: "
                        f"remove or merge rare classes, or pass --{split} FILE") from None
    return keep, held


# --------------------------------------------------------------------------- helpers


def _demo_dir() -> Path:
    import importlib.resources

    demo = Path(str(importlib.resources.files("acceltune") / "demo_data"))
    if not (demo / "train.csv").is_file():
        raise UserError(f"the packaged demo dataset is missing ({demo / 'train.csv'}): reinstall acceltune or pass --train FILE")
    return demo


def _find_split(d: dict, split: str) -> str | None:
    low = {k.lower(): k for k in d}
    return next((low[a] for a in SPLIT_ALIASES[split] if a in low), None)


def _pick_split(d: dict, split: str, path: str) -> str:
    found = _find_split(d, split)
    if found:
        return found
    if split == "test":
        found = _find_split(d, "validation")
    if found is None and len(d) == 1:
        found = next(iter(d))
    if found is None and "train" in d:
        found = "train"
    if found is None:
        raise UserError(f"{path} has no '{split}' split (splits: {', '.join(d)}): pass a single split's file or directory")
    return found


def _type_name(t: pa.DataType) -> str:
    if isinstance(t, pa.BaseExtensionType) and "json" in str(t).lower():
        return "mixed-type (e.g. strings and lists)"
    return str(t)


def _take(ds, idx: np.ndarray):
    """Rows idx of ds as an indices mapping held in numpy/Arrow (Dataset.select builds a Python list of them)."""
    import datasets

    if ds._indices is not None or len(idx) == len(ds):
        return ds.select(idx)
    mapping = datasets.table.InMemoryTable(pa.table({"indices": pa.array(np.asarray(idx, dtype=np.uint64))}))
    fp = _hash(["take", ds._fingerprint, hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest()])
    return datasets.Dataset(ds._data, info=ds.info.copy(), split=ds.split, indices_table=mapping, fingerprint=fp)


def _iter_arrow(ds, columns: list[str]) -> Iterator[pa.Table]:
    yield from ds.select_columns(columns).with_format("arrow").iter(batch_size=BATCH)


def _combine(arr) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _collect_rows(mask: np.ndarray, start: int, shown: list[int], counts: dict, key: str) -> None:
    hits = np.flatnonzero(mask)
    if len(hits):
        counts[key] += len(hits)
        shown.extend((hits[: _SHOW - len(shown)] + start + 1).tolist() if len(shown) < _SHOW else [])


def _rows(shown: list[int], n: int) -> str:
    more = f" and {n - len(shown)} more" if n > len(shown) else ""
    return f"{n} row{'s' if n != 1 else ''} (row{'s' if n != 1 else ''} {', '.join(map(str, shown))}{more}; data rows counted from 1)"


def _few(items: list[str], k: int = _SHOW) -> str:
    return ", ".join(items[:k]) + (f" (and {len(items) - k} more)" if len(items) > k else "")


def _sort_labels(names: Iterable[str]) -> list[str]:
    names = list(names)
    if names and all(re.fullmatch(r"[+-]?\d+", n) for n in names):
        return sorted(names, key=lambda n: (int(n), n))
    return sorted(names)


def _parse_column_names(column_names) -> list[str] | None:
    if column_names is None:
        return None
    names = [c.strip() for c in (column_names.split(",") if isinstance(column_names, str) else column_names)]
    if not names or not all(names) or len(set(names)) != len(names):
        raise UserError(f"--column-names must be distinct, non-empty comma-separated names, e.g. text,label; got {column_names!r}")
    return names


def _check_encoding(encoding: str | None) -> str:
    encoding = encoding or "utf-8"
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"unknown encoding {encoding!r}: use e.g. utf-8, latin-1 or cp1252") from None
    return "utf-8" if name == "utf-8" else encoding


def _reading_encoding(encoding: str) -> str:
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def _encoding_fix(encoding: str) -> str:
    other = "latin-1" if codecs.lookup(encoding).name != "iso8859-1" else "utf-8"
    return f"pass the file's encoding, e.g. --encoding {other} (or cp1252), or re-save it as UTF-8"


def _encoding_error(path: str, encoding: str) -> UserError:
    """Locate the first undecodable byte by streaming the file (only on the error path)."""
    where = ""
    try:
        dec = codecs.getincrementaldecoder(_reading_encoding(encoding))()
        offset, newlines = 0, 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                try:
                    dec.decode(chunk)
                except UnicodeDecodeError as e:
                    pending = len(e.object) - len(chunk)
                    pos = offset + e.start - pending
                    line = newlines + chunk[: max(0, pos - offset)].count(b"\n") + 1
                    byte = e.object[e.start]
                    where = f" (byte 0x{byte:02x} at offset {pos}, line {line})"
                    break
                offset += len(chunk)
                newlines += chunk.count(b"\n")
    except OSError:
        pass
    return UserError(f"{path} is not valid {encoding}{where}: {_encoding_fix(encoding)}")


def _load_error(e: BaseException, path: str, encoding: str, fmt: str) -> UserError:
    chain = []
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for x in chain:
        if isinstance(x, UserError):
            return x
        if isinstance(x, UnicodeDecodeError):
            return _encoding_error(path, encoding)
    for x in chain:
        name = type(x).__name__
        if name == "EmptyDataError":
            return UserError(f"{path} is empty: pass a file with data")
        if name == "ParserError":
            return UserError(f"{path} is not valid {fmt}: {_first_line(x)}: fix that line (quote fields that contain the "
                             f"delimiter), or pass --on-bad-lines warn to skip such lines")
    inner = next((x for x in reversed(chain) if str(x).strip()), chain[0])
    return UserError(f"cannot read {path} as {fmt}: {_first_line(inner)}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _cache_root() -> Path:
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "acceltune"


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


@contextmanager
def _quiet_progress():
    """No progress bar for the quick indexing maps (loading keeps datasets' own bars)."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_enabled = not are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            enable_progress_bars()
