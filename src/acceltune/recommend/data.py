"""Interactions and items: read (CSV/TSV/Parquet), validate (one UserError line each), split leave-one-out.

Items get dense indices 0..V-1 in catalogue order (the items file's order, then items only seen in the
interactions). Each user's events are ordered by timestamp (ties keep file order); a user with at least
`MIN_SPLIT_EVENTS` events gives the last one to test and the one before to validation, the rest to training;
shorter users train only (counted in the notes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acceltune.errors import UserError

MIN_SPLIT_EVENTS = 3
USER_COLUMNS = ("user_id", "userid", "user", "uid", "customer_id", "visitorid", "session_id")
ITEM_COLUMNS = ("item_id", "itemid", "item", "iid", "movieid", "product_id", "productid", "article_id")
TIME_COLUMNS = ("timestamp", "time", "ts", "datetime", "date", "event_time")
RATING_COLUMNS = ("rating", "score", "stars")
ITEM_ID_COLUMNS = ("item_id", "itemid", "id", "movieid", "product_id", "productid", "article_id", "item")


def read_table(path: str | Path):
    """A pandas DataFrame of strings (ids stay ids: "007" is not 7) from CSV, TSV or Parquet."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such file; pass an interactions/items file (CSV, TSV or Parquet)")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p)
            return df.astype({c: str for c in df.columns if df[c].dtype == object})
        sep = "\t" if suffix in (".tsv", ".tab") else ","
        return pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError) as e:  # pandas' ParserError is a ValueError
        raise UserError(f"{path}: cannot be read as {'Parquet' if suffix in ('.parquet', '.pq') else 'delimited text'} ({str(e).splitlines()[0]})") from None


def pick_column(df, given: str | None, candidates: tuple[str, ...], what: str, flag: str, path, required: bool = True) -> str | None:
    if given is not None:
        if given not in df.columns:
            raise UserError(f"{path}: no column {given!r} ({flag}); columns are {', '.join(map(str, df.columns))}")
        return given
    by_lower = {str(c).lower(): c for c in df.columns}
    for name in candidates:
        if name in by_lower:
            return by_lower[name]
    if required:
        raise UserError(f"{path}: no {what} column (looked for {', '.join(candidates[:4])}, ...); name it with {flag}")
    return None


@dataclass
class Catalogue:
    """Every item the model can recommend: its id, text (may be empty) and index (position in ``ids``)."""

    ids: list[str]
    texts: list[str]

    def __post_init__(self):
        self.index = {item: i for i, item in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_text(self) -> bool:
        return any(self.texts)


@dataclass
class Interactions:
    """Each user's item indices in time order, their timestamps, the catalogue, and what was dropped or kept aside."""

    users: list[str]
    sequences: list[np.ndarray]
    times: list[np.ndarray]
    catalogue: Catalogue
    notes: list[str] = field(default_factory=list)

    @property
    def num_events(self) -> int:
        return int(sum(len(s) for s in self.sequences))


@dataclass
class LeaveOneOut:
    """Per split user (>= MIN_SPLIT_EVENTS events): training prefix, validation target, test target."""

    train: list[np.ndarray]
    """Every user's training events (the whole sequence for users too short to split)."""
    eval_users: np.ndarray
    """Indices (into Interactions.users) of the users with a validation and a test target."""
    validation_targets: np.ndarray
    test_targets: np.ndarray
    short_users: int

    def history(self, user: int, split: str) -> np.ndarray:
        """What the model sees before the ``split`` target of ``user``: training events (+ the validation one for test)."""
        row = self._row[user]
        base = self.train[user]
        return base if split == "validation" else np.append(base, self.validation_targets[row])

    def __post_init__(self):
        self._row = {int(u): r for r, u in enumerate(self.eval_users)}


def leave_one_out(sequences: list[np.ndarray]) -> LeaveOneOut:
    train, eval_users, val, test, short = [], [], [], [], 0
    for u, seq in enumerate(sequences):
        if len(seq) >= MIN_SPLIT_EVENTS:
            train.append(seq[:-2])
            eval_users.append(u)
            val.append(seq[-2])
            test.append(seq[-1])
        else:
            train.append(seq)
            short += 1
    return LeaveOneOut(train, np.asarray(eval_users, dtype=np.int64), np.asarray(val, dtype=np.int64),
                       np.asarray(test, dtype=np.int64), short)


@dataclass
class InteractionColumns:
    user: str | None = None
    item: str | None = None
    timestamp: str | None = None
    rating: str | None = None
    min_rating: float | None = None


def read_items(path: str | Path, id_column: str | None = None, text_columns: list[str] | None = None) -> Catalogue:
    """Items file: an id column and text fields (all other columns unless given), joined as "field: value" lines."""
    df = read_table(path)
    col = pick_column(df, id_column, ITEM_ID_COLUMNS, "item id", "--item-id-column", path)
    ids = df[col].astype(str).tolist()
    seen, dupes = set(), []
    for i in ids:
        if i in seen:
            dupes.append(i)
        seen.add(i)
    if dupes:
        raise UserError(f"{path}: {len(dupes)} duplicate item id(s) in column {col!r} (e.g. {', '.join(dupes[:3])}): keep one row per item")
    fields_ = text_columns if text_columns else [c for c in df.columns if c != col]
    for f in fields_:
        if f not in df.columns:
            raise UserError(f"{path}: no text column {f!r} (--item-text-columns); columns are {', '.join(map(str, df.columns))}")
    values = df[fields_].astype(str).replace({"nan": "", "None": ""}).to_numpy() if fields_ else np.zeros((len(df), 0))
    texts = [". ".join(v.replace("|", ", ") for v in row if v) for row in values]
    return Catalogue(ids, texts)


def read_interactions(path: str | Path, columns: InteractionColumns, items: Catalogue | None = None,
                      items_path: str | None = None) -> Interactions:
    """Validated, deduplicated, time-ordered interactions over the catalogue (``items`` first, when given)."""
    import pandas as pd

    df = read_table(path)
    user = pick_column(df, columns.user, USER_COLUMNS, "user", "--user-column", path)
    item = pick_column(df, columns.item, ITEM_COLUMNS, "item", "--item-column", path)
    time = pick_column(df, columns.timestamp, TIME_COLUMNS, "timestamp", "--timestamp-column", path)
    notes: list[str] = []
    if len(df) == 0:
        raise UserError(f"{path}: no interactions (the file has a header and no rows)")
    ts = pd.to_numeric(df[time], errors="coerce")
    bad = np.flatnonzero(ts.isna().to_numpy())
    if len(bad):
        raise UserError(f"{path}: {len(bad)} non-numeric timestamp(s) in column {time!r} (first at data row {bad[0] + 1}: "
                        f"{df[time].iloc[bad[0]]!r}); give Unix times or numbers that order the events")
    # Ids as integer codes from here on (10M events: a few hundred MB less than string columns). Users sorted
    # by id, items in order of first appearance.
    user_codes, user_names = pd.factorize(df[user].astype(str), sort=True)
    item_codes, item_names = pd.factorize(df[item].astype(str))
    frame = pd.DataFrame({"user": user_codes, "item": item_codes, "ts": ts.to_numpy(np.float64)})
    if columns.min_rating is not None:
        rating = pick_column(df, columns.rating, RATING_COLUMNS, "rating", "--rating-column", path)
        r = pd.to_numeric(df[rating], errors="coerce")
        if r.isna().any():
            first = int(np.flatnonzero(r.isna().to_numpy())[0])
            raise UserError(f"{path}: non-numeric rating {df[rating].iloc[first]!r} in column {rating!r} at data row {first + 1}")
        keep = (r >= columns.min_rating).to_numpy()
        notes.append(f"--min-rating {columns.min_rating:g}: kept {int(keep.sum())} of {len(frame)} interactions")
        frame = frame[keep]
    del df, ts
    dup = frame.duplicated(["user", "item", "ts"])
    if dup.any():
        notes.append(f"{int(dup.sum())} duplicate interaction(s) (same user, item and timestamp) counted once")
        frame = frame[~dup.to_numpy()]
    if len(frame) == 0:
        raise UserError(f"{path}: no interactions left after --min-rating {columns.min_rating:g}: lower it")
    present = pd.unique(frame["item"].to_numpy())  # codes, in order of first appearance
    if items is not None:
        missing = sorted(set(item_names[present]) - set(items.index))
        if missing:
            raise UserError(f"{items_path}: {len(missing)} interacted item(s) missing from the items file "
                            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): add them, or omit --items")
        catalogue = items
    else:
        catalogue = Catalogue([str(i) for i in item_names[present]], [])
        catalogue.texts = [""] * len(catalogue.ids)
    index_of_code = np.array([catalogue.index.get(n, -1) for n in item_names], dtype=np.int64)
    frame = frame.assign(idx=index_of_code[frame["item"].to_numpy()])
    frame = frame.sort_values(["user", "ts"], kind="stable")
    users, starts = np.unique(frame["user"].to_numpy(), return_index=True)
    order = np.argsort(starts)
    bounds = np.append(starts[order], len(frame))
    idx, tsv = frame["idx"].to_numpy(), frame["ts"].to_numpy()
    seqs = [idx[bounds[i]:bounds[i + 1]] for i in range(len(order))]
    times = [tsv[bounds[i]:bounds[i + 1]] for i in range(len(order))]
    return Interactions([str(u) for u in user_names[users[order]]], seqs, times, catalogue, notes)
