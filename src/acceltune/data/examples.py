"""Examples and splits: a validated table -> the columns training and evaluation read, and the
train/validation/test splits (given, found in the source, or held out from --train, stratified).

Every dataset returned for training/evaluation has exactly the columns ``text`` (str),
``text_pair`` (str, pair tasks only) and ``labels`` (class index, a ``ClassLabel`` feature that
carries the label names, for single-label; a multi-hot list[float] for multi-label).
"""

from __future__ import annotations

import hashlib
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from acceltune.config import DataArgs
from acceltune.data.read import CACHE_VERSION, cache_root, content_hash, demo_dir, find_split, pick_split, read_source, read_table
from acceltune.data.validate import (BATCH, TEXT_CANDIDATES, Scan, as_text, collect_rows, describe_rows, empty_mask, first_few,
                                     first_line, iter_arrow, label_strings, multi_values, resolve_column, scan_labeled,
                                     sort_labels)
from acceltune.errors import UserError

if TYPE_CHECKING:  # datasets is imported lazily: it costs a second at CLI start-up
    import datasets

log = logging.getLogger("acceltune.data")


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


def load_splits(args: DataArgs, *, seed: int = 42) -> Splits:
    """Train/validation/test datasets for `acceltune train` (see the module docstring for columns)."""
    notes: list[str] = []
    train_path: str | None = args.train
    test_path: str | None = args.test
    if train_path is None:
        demo = demo_dir()
        train_path = str(demo / "train.csv")
        if test_path is None and (demo / "test.csv").is_file():
            test_path = str(demo / "test.csv")
        notes.append(f"no --train given: using the packaged demo dataset ({demo})")

    src, n = read_source(train_path, args.delimiter, args.encoding, args.column_names, args.on_bad_lines)
    notes += n
    given: dict[str, tuple[Any, str]] = {}  # split -> (Dataset, display name)
    if isinstance(src, dict):
        name = pick_split(src, "train", train_path)
        given["train"] = (src[name], f"{train_path} [{name}]")
        for split, path in (("validation", args.validation), ("test", test_path)):
            if path is None and (other := find_split(src, split)):
                given[split] = (src[other], f"{train_path} [{other}]")
                notes.append(f"using the '{other}' split of {train_path} as {split} data")
    else:
        given["train"] = (src, train_path)
    for split, path in (("validation", args.validation), ("test", test_path)):
        if path is None:
            continue
        s, n = read_source(path, args.delimiter, args.encoding, args.column_names, args.on_bad_lines)
        notes += n
        if isinstance(s, dict):
            name = pick_split(s, split, path)
            given[split] = (s[name], f"{path} [{name}]")
        else:
            given[split] = (s, path)

    multi = bool(args.multi_label)
    scans = {split: scan_labeled(ds, name, args, multi) for split, (ds, name) in given.items()}
    train_scan = scans["train"]
    found = set(train_scan.counts)
    if not multi and len(found) < 2:
        raise UserError(f"{train_scan.name} has a single label ({', '.join(map(repr, found))}): a classifier needs at "
                        f"least 2 classes; check --label-column or add examples of the other classes")
    oos = args.oos_label or None
    for split in ("validation", "test"):
        if split in scans and (extra := set(scans[split].counts) - found - {oos}):
            raise UserError(f"{scans[split].name} has label(s) that never occur in the training data: "
                            f"{first_few(sort_labels(extra))}: remove those rows or add examples of them to the training data")
    # The out-of-scope label (--oos-label) may occur in held-out data only (calibration examples): it still joins
    # the label set, so every split has one set of classes; with no training examples the class is never learnt.
    labels = sort_labels(found | {oos for scan in scans.values() if oos in scan.counts})

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
    src, notes = read_source(path, args.delimiter, args.encoding, args.column_names, args.on_bad_lines)
    name = path
    if isinstance(src, dict):
        split = pick_split(src, "test", path)
        src, name = src[split], f"{path} [{split}]"
    for note in notes:
        log.warning(note)
    scan = scan_labeled(src, name, args, bool(args.multi_label))
    if labels is not None:
        labels = [str(l) for l in labels]
        unknown = set(scan.counts) - set(labels)
        if unknown:
            raise UserError(f"{name} has label(s) the model does not know: {first_few(sort_labels(unknown))}; the model's "
                            f"labels are: {first_few(labels, 20)}: remove those rows, or evaluate a model trained on these labels")
    else:
        labels = sort_labels(scan.counts)
    return _to_examples(src, scan, labels, args)


def load_texts(path: str, text_column: str | None, text_pair_column: str | None = None, *, delimiter: str | None = None,
               encoding: str = "utf-8", column_names: str | list[str] | None = None
               ) -> tuple[list[str], list[str] | None, "datasets.Dataset"]:
    """Texts to classify (``acceltune predict --input FILE|-``): texts, pairs (or None), and the raw table.

    ``-`` reads stdin: JSON Lines, CSV (a header naming the text column) or plain text, one text per line.
    A .txt file without --delimiter is one text per line too; blank lines are no inputs and are dropped.
    """
    table, notes, plain = read_table(path, delimiter, encoding, column_names, "warn", text_hint=text_column)
    for note in notes:
        log.warning(note)
    if plain:  # one text per line: blank lines are not inputs
        col = table.data.column("text") if table._indices is None else None
        if col is not None:
            blank = empty_mask(col, "text", path)
            if blank.any():
                table = table.select(np.flatnonzero(~blank))
    cols = table.column_names
    tcol = resolve_column(cols, text_column, TEXT_CANDIDATES, "text", "--text-column", path)
    pcol = resolve_column(cols, text_pair_column, (), "text pair", "--text-pair-column", path) if text_pair_column else None
    texts: list[str] = []
    pairs: list[str] | None = [] if pcol else None
    bad: dict[str, list[int]] = {tcol: [], **({pcol: []} if pcol else {})}
    counts = {c: 0 for c in bad}
    row = 0
    for tbl in iter_arrow(table, [tcol] + ([pcol] if pcol else [])):
        for c, out in ((tcol, texts), (pcol, pairs)):
            if c is None:
                continue
            arr = as_text(tbl.column(c), c, path)
            collect_rows(empty_mask(arr, c, path), row, bad[c], counts, c)
            out.extend(arr.to_pylist())
        row += tbl.num_rows
    for c in bad:
        if counts[c]:
            raise UserError(f"empty {c!r} in {describe_rows(bad[c], counts[c])} of {path}: remove or fill these rows")
    if not texts:
        raise UserError(f"{path} holds no texts to classify")
    return texts, pairs, table


def _to_examples(ds, scan: Scan, labels: list[str], args: DataArgs):
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
        cols = {"text": as_text(tbl.column(scan.text), scan.text, scan.name)}
        if scan.pair:
            cols["text_pair"] = as_text(tbl.column(scan.pair), scan.pair, scan.name)
        if multi:
            _, parents, values = multi_values(tbl.column(scan.label), scan.feature, scan.label, scan.name, args.label_delimiter)
            hot = np.zeros((tbl.num_rows, L), dtype=np.float32)
            hot[parents, pc.index_in(values, value_set=value_set).to_numpy(zero_copy_only=False)] = 1.0
            offsets = pa.array(np.arange(0, tbl.num_rows * L + 1, L, dtype=np.int32))
            cols["labels"] = pa.ListArray.from_arrays(offsets, pa.array(hot.ravel()))
        else:
            strings = label_strings(tbl.column(scan.label), scan.feature, scan.label, scan.name)
            cols["labels"] = pc.cast(pc.index_in(strings, value_set=value_set), pa.int64())
        return pa.table(cols)

    key = content_hash(["examples", CACHE_VERSION, ds._fingerprint, scan.text, scan.pair, scan.label, multi,
                 args.label_delimiter if multi else None, labels])
    kw: dict[str, Any] = dict(batched=True, batch_size=BATCH, remove_columns=ds.column_names, features=features,
                              new_fingerprint=key)
    if ds.cache_files:  # never next to the user's data (load_from_disk): in the datasets cache
        kw["cache_file_name"] = str(cache_root() / "examples" / f"{key}.arrow")
        (cache_root() / "examples").mkdir(parents=True, exist_ok=True)
    with _quiet_progress():
        out = ds.with_format("arrow").map(fn, **kw)
    return out.with_format(None)


def _check_splittable(scan: Scan, wanted: list[tuple[str, float]], multi: bool) -> None:
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


def _split_indices(idx: np.ndarray, y, size: int, seed: int, scan: Scan, split: str, frac: float):
    from sklearn.model_selection import train_test_split

    try:
        keep, held = train_test_split(idx, test_size=size, random_state=seed, shuffle=True, stratify=y)
    except ValueError as e:
        raise UserError(f"cannot make a stratified {frac:.0%} {split} split of {scan.name}: {first_line(e)}: "
                        f"remove or merge rare classes, or pass --{split} FILE") from None
    return keep, held


def _take(ds, idx: np.ndarray):
    """Rows idx of ds as an indices mapping held in numpy/Arrow (Dataset.select builds a Python list of them)."""
    import datasets

    if ds._indices is not None or len(idx) == len(ds):
        return ds.select(idx)
    mapping = datasets.table.InMemoryTable(pa.table({"indices": pa.array(np.asarray(idx, dtype=np.uint64))}))
    fp = content_hash(["take", ds._fingerprint, hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest()])
    return datasets.Dataset(ds._data, info=ds.info.copy(), split=ds.split, indices_table=mapping, fingerprint=fp)


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
