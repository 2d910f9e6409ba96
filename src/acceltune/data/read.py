"""Reading data: a path (or stdin) -> an Arrow-backed ``datasets.Dataset`` with the file's own columns.

Formats (by extension): .csv, .tsv, .json/.jsonl, .parquet, .txt (one text per line, or delimited
with --delimiter), a directory written by ``datasets.save_to_disk`` (or holding train/validation/test
data files), else a Hub dataset id when online. CSV/TSV/JSON/Parquet go through ``datasets``'
Arrow builders (memory-mapped, so files bigger than RAM work); only custom-delimited text files use
the line parser here, which streams into an Arrow file in the ``datasets`` cache. Encodings are
checked here, and a file that does not decode is named with the first bad byte's place.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import pyarrow as pa

from acceltune.data.validate import BATCH, TEXT_CANDIDATES, encoding_fix, first_line
from acceltune.errors import UserError
from acceltune.hub import looks_like_repo_id, offline

if TYPE_CHECKING:  # datasets is imported lazily: it costs a second at CLI start-up
    import datasets

SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}
CACHE_VERSION = "1"
"""Bump when the cached output of the parser or the indexing map changes meaning."""
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json",
           ".parquet": "parquet", ".pq": "parquet", ".txt": "text"}


def load_table(path: str, *, delimiter: str | None = None, encoding: str = "utf-8",
               column_names: str | list[str] | None = None, on_bad_lines: str = "warn") -> tuple["datasets.Dataset", list[str]]:
    """The raw table in ``path`` (all its columns) and notes such as skipped bad lines."""
    table, notes, _ = read_table(path, delimiter, encoding, column_names, on_bad_lines)
    return table, notes


def read_table(path, delimiter, encoding, column_names, on_bad_lines, text_hint=None):
    """(Dataset, notes, plain): plain is True for one-text-per-line input (a .txt file or plain stdin)."""
    path = str(path)
    if path == "-":
        ds, notes, plain = _read_stdin(delimiter, encoding, column_names, on_bad_lines, text_hint)
        return ds, notes, plain
    src, notes = read_source(path, delimiter, encoding, column_names, on_bad_lines)
    if isinstance(src, dict):
        split = pick_split(src, "train", path)
        notes.append(f"using the '{split}' split of {path} (splits: {', '.join(src)})")
        src = src[split]
    plain = Path(path).suffix.lower() == ".txt" and delimiter is None
    return src, notes, plain


def read_source(path: str, delimiter: str | None, encoding: str, column_names, on_bad_lines: str):
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
    kind = FORMATS.get(ext)
    if kind == "text" and delimiter is None and names and len(names) > 1:
        raise UserError(f"--column-names {','.join(names)} needs --delimiter for {path}: a .txt file without one is one text per line")
    if kind in (None, "text") and delimiter is not None:
        return _read_delimited(p, path, delimiter, encoding, names, on_bad_lines)
    if kind is None and ext in (".xlsx", ".xls", ".ods"):
        raise UserError(f"{path} is a spreadsheet: save the sheet as CSV (UTF-8) and pass that file")
    if kind is None:
        raise UserError(f"cannot tell the format of {path} from its extension: use .csv, .tsv, .json, .jsonl, .parquet "
                        f"or .txt, or pass --delimiter for a delimited text file")
    if kind == "csv":
        return _read_csv(p, path, delimiter or ("\t" if ext == ".tsv" else ","), encoding, names, on_bad_lines)
    if kind == "text":
        ds = _build("text", p, path, encoding, "text", encoding=encoding)
        if names:
            ds = ds.rename_column("text", names[0])
        return ds, []
    if kind == "json":
        kw = {} if encoding in ("utf-8", "utf-8-sig") else {"encoding": encoding}
        return _build("json", p, path, encoding, "JSON (one object per line, or a list of objects)", **kw), []
    return _build("parquet", p, path, encoding, "Parquet"), []


def _build(builder: str, p: Path, path: str, file_encoding: str, fmt: str, **kw) -> "datasets.Dataset":
    """``datasets.load_dataset(builder)`` on one file, its failures as one UserError.

    The builders log their own line ("Failed to read file ...") before raising; that line is muted here,
    as the UserError says the same with the fix."""
    import datasets

    root = logging.getLogger("datasets")
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        return datasets.load_dataset(builder, data_files=str(p), split="train", **kw)
    except Exception as e:
        error = _load_error(e, path, file_encoding, fmt)
        if builder == "json" and error.args[0].startswith("cannot read"):  # no better reason found: look for the line
            error = _json_error(p, path, file_encoding) or error
        raise error from None
    finally:
        root.setLevel(level)


def _json_error(p: Path, path: str, encoding: str) -> UserError | None:
    """The first line that is not a JSON object, for a JSON Lines file that failed to load (Arrow's and
    pandas' messages give a byte position, often the wrong one); None for a JSON list or when all parse."""
    with open(p, encoding=_reading_encoding(encoding), errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            stripped = line.strip()
            if not stripped:
                continue
            if lineno == 1 and stripped.startswith("["):
                return None  # one JSON document: the library's message is all there is
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as e:
                return UserError(f"line {lineno} of {path} is not valid JSON ({e.msg} at column {e.colno}): fix or remove "
                                 f"it (JSON Lines: one object per line)")
            if not isinstance(value, dict):
                return UserError(f"line {lineno} of {path} is not a JSON object: JSON Lines hold one object per line, "
                                 f'e.g. {{"text": "...", "label": "..."}}')
    return None


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
        ds = _build("csv", p, path, encoding, "CSV", **kw)
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
    key = content_hash(["delimited", CACHE_VERSION, str(p.resolve()), st.st_size, st.st_mtime_ns, delimiter, encoding, names, on_bad_lines])
    cache = cache_root() / "delimited"
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
            raise UserError(f"cannot load the saved dataset in {path}: {first_line(e)}") from None
        if isinstance(loaded, datasets.DatasetDict):
            return dict(loaded), []
        return loaded, []
    found: dict[str, Path] = {}
    for f in sorted(p.iterdir()):
        if f.is_file() and f.suffix.lower() in FORMATS:
            for split, aliases in SPLIT_ALIASES.items():
                if f.stem.lower() in aliases and split not in found:
                    found[split] = f
    if "train" not in found and not found:
        raise UserError(f"directory {path} holds neither a dataset saved with save_to_disk nor train/validation/test "
                        f"data files (e.g. train.csv): pass a file")
    out, notes = {}, []
    for split, f in found.items():
        ds, n = read_source(str(f), delimiter, encoding, names, on_bad_lines)
        out[split] = ds
        notes += n
    return out, notes


def _read_hub(path: str):
    """A Hub dataset id, when the path does not exist locally and we are online."""
    looks_like_id = looks_like_repo_id(path) and Path(path).suffix.lower() not in FORMATS
    if not looks_like_id:
        raise UserError(f"{path}: no such file or directory")
    if offline():
        raise UserError(f"{path}: no such file or directory (not tried as a Hub dataset id: HF_HUB_OFFLINE is set)")
    import datasets

    try:
        loaded = datasets.load_dataset(path)
    except Exception as e:
        raise UserError(f"{path}: no such file or directory, and loading it as a Hub dataset failed: {first_line(e)}") from None
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
                            f"{encoding_fix(encoding)}") from None
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
            raise UserError(f"stdin JSON has inconsistent values: {first_line(e)}") from None
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
                raise UserError(f"stdin is not valid CSV: {first_line(e)}: fix the line, or pass --on-bad-lines warn") from None
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


def demo_dir() -> Path:
    """The packaged demo dataset (train.csv, test.csv): the data of a run without --train."""
    import importlib.resources

    demo = Path(str(importlib.resources.files("acceltune") / "demo_data"))
    if not (demo / "train.csv").is_file():
        raise UserError(f"the packaged demo dataset is missing ({demo / 'train.csv'}): reinstall acceltune or pass --train FILE")
    return demo


def find_split(d: dict, split: str) -> str | None:
    """The key of ``d`` that names ``split`` (any of its SPLIT_ALIASES, any case), or None."""
    low = {k.lower(): k for k in d}
    return next((low[a] for a in SPLIT_ALIASES[split] if a in low), None)


def pick_split(d: dict, split: str, path: str) -> str:
    """The split of ``d`` to use as ``split``: its own, else (for test) validation, the only one, or train."""
    found = find_split(d, split)
    if found:
        return found
    if split == "test":
        found = find_split(d, "validation")
    if found is None and len(d) == 1:
        found = next(iter(d))
    if found is None and "train" in d:
        found = "train"
    if found is None:
        raise UserError(f"{path} has no '{split}' split (splits: {', '.join(d)}): pass a single split's file or directory")
    return found


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
    return UserError(f"{path} is not valid {encoding}{where}: {encoding_fix(encoding)}")


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
        if isinstance(x, ValueError) and "corresponds to no data" in str(x):  # datasets' words for a split with no rows
            header = " below the header" if fmt == "CSV" else ""
            return UserError(f"{path} has no data rows: add rows{header}, or pass a file that has some")
        if name == "ParserError":
            return UserError(f"{path} is not valid {fmt}: {first_line(x)}: fix that line (quote fields that contain the "
                             f"delimiter), or pass --on-bad-lines warn to skip such lines")
    inner = next((x for x in reversed(chain) if str(x).strip()), chain[0])
    return UserError(f"cannot read {path} as {fmt}: {first_line(inner)}")


def cache_root() -> Path:
    """acceltune's part of the datasets cache (parsed delimited files, example tables): never beside the user's data."""
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "acceltune"


def content_hash(obj) -> str:
    """A short stable hash of a JSON-able description: the name of a cache entry."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]
