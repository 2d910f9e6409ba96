"""acceltune.data: every input format, the PhraseBank original file, validation messages, splits, labels."""

from __future__ import annotations

import io
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

datasets = pytest.importorskip("datasets")

from acceltune.config import DataArgs  # noqa: E402
from acceltune.data import Splits, load_labeled, load_splits, load_table, load_texts  # noqa: E402
from acceltune.errors import UserError  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PHRASEBANK = SHARED / "financial_phrasebank" / "Sentences_AllAgree.txt"


@pytest.fixture(autouse=True, scope="module")
def _private_datasets_cache(tmp_path_factory):
    """A fresh datasets cache for this module: cold-cache paths run, and nothing leaks into ~/.cache."""
    old = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = tmp_path_factory.mktemp("hf_datasets_cache")
    yield
    datasets.config.HF_DATASETS_CACHE = old


ROWS = [("good movie", "pos"), ("bad movie", "neg"), ("fine film", "pos"), ("awful plot", "neg"),
        ("great acting", "pos"), ("dull scenes", "neg")]


def write(path: Path, text: str, encoding: str = "utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


def csv_text(rows=ROWS, header="text,label", sep=","):
    return "\n".join([header] + [f"{t}{sep}{l}" for t, l in rows]) + "\n"


def balanced(n_per_class: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"{label} example number {i}", label) for label, n in n_per_class.items() for i in range(n)]


def rows_of(ds) -> list[tuple[str, str]]:
    names = ds.features["labels"].names
    return [(r["text"], names[r["labels"]]) for r in ds]


def user_error(fn, *a, **kw) -> str:
    with pytest.raises(UserError) as e:
        fn(*a, **kw)
    msg = str(e.value)
    assert "\n" not in msg, "a UserError must be one line"
    return msg


# ---------------------------------------------------------------------------- formats


def test_csv_loads_with_exact_columns_and_sorted_labels(tmp_path):
    s = load_splits(DataArgs(train=write(tmp_path / "train.csv", csv_text()), validation_fraction=0, test_fraction=0))
    assert isinstance(s, Splits)
    assert s.train.column_names == ["text", "labels"]
    assert s.labels == ["neg", "pos"]
    assert rows_of(s.train) == ROWS
    assert s.validation is None and s.test is None
    assert not s.multi_label and not s.text_pair


def test_csv_quoted_field_with_comma_and_string_columns(tmp_path):
    text = 'text,label,id\n"hello, world",a,001\nNA,b,002\n'
    table, notes = load_table(write(tmp_path / "t.csv", text))
    assert notes == []
    assert table.column_names == ["text", "label", "id"]
    # every CSV column is read as a string: ids keep leading zeros, "NA" is a text, not a missing value
    assert table["id"] == ["001", "002"]
    assert table["text"] == ["hello, world", "NA"]


def test_tsv(tmp_path):
    path = write(tmp_path / "train.tsv", csv_text(header="sentence\tcategory", sep="\t"))
    ds = load_labeled(path, DataArgs())
    assert rows_of(ds) == ROWS


def test_jsonl_and_json_list(tmp_path):
    jsonl = "\n".join(json.dumps({"content": t, "intent": l}) for t, l in ROWS) + "\n"
    ds = load_labeled(write(tmp_path / "d.jsonl", jsonl), DataArgs())
    assert rows_of(ds) == ROWS
    js = json.dumps([{"text": t, "label": l} for t, l in ROWS])
    ds = load_labeled(write(tmp_path / "d.json", js), DataArgs())
    assert rows_of(ds) == ROWS


def test_parquet(tmp_path):
    import pandas as pd

    path = tmp_path / "d.parquet"
    pd.DataFrame(ROWS, columns=["message", "class"]).to_parquet(path)
    ds = load_labeled(str(path), DataArgs())
    assert rows_of(ds) == ROWS


def test_saved_dataset_dir_is_not_written_to(tmp_path):
    d = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": [t for t, _ in ROWS], "label": [l for _, l in ROWS]}).save_to_disk(str(d))
    before = sorted(p.name for p in d.iterdir())
    ds = load_labeled(str(d), DataArgs())
    assert rows_of(ds) == ROWS
    assert sorted(p.name for p in d.iterdir()) == before, "cache files must not go into the user's data directory"


def test_saved_dataset_dict_uses_its_splits(tmp_path):
    d = tmp_path / "dd"
    train = balanced({"a": 10, "b": 10})
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": [t for t, _ in train], "label": [l for _, l in train]}),
        "test": datasets.Dataset.from_dict({"text": ["x a", "x b"], "label": ["a", "b"]}),
    })
    dd.save_to_disk(str(d))
    s = load_splits(DataArgs(train=str(d), validation_fraction=0.1))
    assert len(s.test) == 2
    assert len(s.train) + len(s.validation) == 20
    assert any("'test' split" in n for n in s.notes)


def test_classlabel_feature_maps_to_names(tmp_path):
    d = tmp_path / "cl"
    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["zeta", "alpha"])})
    datasets.Dataset.from_dict({"text": ["one", "two", "three"], "label": [0, 1, 0]}, features=feats).save_to_disk(str(d))
    ds = load_labeled(str(d), DataArgs())
    assert rows_of(ds) == [("one", "zeta"), ("two", "alpha"), ("three", "zeta")]


def test_headerless_delimited_text_splits_on_last_delimiter(tmp_path):
    path = write(tmp_path / "d.txt", "price @ 5 rose@pos\nshares fell@neg\n\nok@pos\n")
    table, notes = load_table(path, delimiter="@", column_names="text,label")
    assert notes == []
    assert table["text"] == ["price @ 5 rose", "shares fell", "ok"]
    assert table["label"] == ["pos", "neg", "pos"]


def test_headerless_csv_with_column_names(tmp_path):
    path = write(tmp_path / "d.csv", "".join(f"{t};{l}\n" for t, l in ROWS))
    ds = load_labeled(path, DataArgs(delimiter=";", column_names="text,label"))
    assert rows_of(ds) == ROWS


def test_txt_without_delimiter_is_one_text_per_line(tmp_path):
    path = write(tmp_path / "in.txt", "first text\n\nsecond, with comma\n")
    texts, pairs, table = load_texts(path, None)
    assert texts == ["first text", "second, with comma"]
    assert pairs is None
    assert len(table) == 2


def test_text_pair_column(tmp_path):
    text = "premise,hypothesis,label\na cat sits,an animal sits,yes\na dog runs,a cat sleeps,no\n"
    ds = load_labeled(write(tmp_path / "p.csv", text), DataArgs(text_column="premise", text_pair_column="hypothesis"))
    assert ds.column_names == ["text", "text_pair", "labels"]
    assert ds[1]["text_pair"] == "a cat sleeps"
    texts, pairs, _ = load_texts(str(tmp_path / "p.csv"), "premise", "hypothesis")
    assert pairs == ["an animal sits", "a cat sleeps"]


# ---------------------------------------------------------------------------- stdin


@pytest.mark.parametrize("payload,expected", [
    (b"one\n\ntwo, three\n", ["one", "two, three"]),
    (b'{"text": "a", "id": 1}\n{"text": "b", "id": 2}\n', ["a", "b"]),
    (b"id,sentence\n7,hello there\n8,\"quoted, text\"\n", ["hello there", "quoted, text"]),
])
def test_stdin_formats(monkeypatch, payload, expected):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
    texts, pairs, table = load_texts("-", None)
    assert texts == expected
    assert len(table) == len(expected)


# ---------------------------------------------------------------------------- Financial PhraseBank


@pytest.mark.skipif(not PHRASEBANK.is_file(), reason=f"{PHRASEBANK} not present (../shared/data beside the repo)")
def test_phrasebank_original_file():
    args = DataArgs(train=str(PHRASEBANK), delimiter="@", encoding="latin-1", column_names="text,label", test_fraction=0.1)
    s = load_splits(args)
    assert len(s.train) + len(s.validation) + len(s.test) == 2263
    assert s.labels == ["negative", "neutral", "positive"]
    assert any("skipped 1 bad line: 38" in n for n in s.notes), s.notes
    # the cached second load still reports the skipped line
    s2 = load_splits(args)
    assert any("bad line: 38" in n for n in s2.notes), s2.notes
    assert rows_of(s2.test) == rows_of(s.test)
    table, _ = load_table(str(PHRASEBANK), delimiter="@", encoding="latin-1", column_names="text,label")
    assert len(table) == 2263
    assert "ñ" in "".join(table["text"])  # latin-1 decoded (byte 0xf1), not mojibake
    msg = user_error(load_table, str(PHRASEBANK), delimiter="@", encoding="latin-1", column_names="text,label",
                     on_bad_lines="error")
    assert "line 38" in msg


@pytest.mark.skipif(not PHRASEBANK.is_file(), reason=f"{PHRASEBANK} not present (../shared/data beside the repo)")
def test_phrasebank_wrong_encoding_names_line():
    msg = user_error(load_table, str(PHRASEBANK), delimiter="@", column_names="text,label")
    assert "--encoding latin-1" in msg and "Sentences_AllAgree.txt" in msg and "line " in msg


# ---------------------------------------------------------------------------- bad input


def test_csv_bad_lines_warn_and_error(tmp_path):
    path = write(tmp_path / "bad.csv", "text,label\na,pos\nb,neg,extra\nc,pos\nd,neg\n")
    table, notes = load_table(path)
    assert table["text"] == ["a", "c", "d"]
    assert notes and "skipped 1 bad line: 3" in notes[0]
    _, again = load_table(path)  # served from the datasets cache: the note must survive
    assert again == notes
    msg = user_error(load_table, path, on_bad_lines="error")
    assert "line 3" in msg and "bad.csv" in msg


def test_delimited_bad_lines_warn_and_error(tmp_path):
    path = write(tmp_path / "bad.txt", "t1@pos\nstray fragment\nt2@neg\nt3@pos\n")
    table, notes = load_table(path, delimiter="@", column_names="text,label")
    assert table["text"] == ["t1", "t2", "t3"]
    assert notes == [f"{path}: skipped 1 bad line: 2"]
    msg = user_error(load_table, path, delimiter="@", column_names="text,label", on_bad_lines="error")
    assert "line 2" in msg and "--on-bad-lines warn" in msg


@pytest.mark.parametrize("ext,delimiter", [(".csv", None), (".txt", "@")])
def test_encoding_error_suggests_encoding(tmp_path, ext, delimiter):
    sep = delimiter or ","
    path = write(tmp_path / f"latin{ext}", f"text{sep}label\nplain{sep}a\ncafé crème{sep}b\n", encoding="latin-1")
    msg = user_error(load_table, path, delimiter=delimiter)
    assert "--encoding latin-1" in msg and f"latin{ext}" in msg and "line 3" in msg
    table, _ = load_table(path, delimiter=delimiter, encoding="latin-1")
    assert table["text"][1] == "café crème"


def test_unknown_column_lists_columns(tmp_path):
    path = write(tmp_path / "train.csv", csv_text(header="text,category"))
    msg = user_error(load_splits, DataArgs(train=path, text_column="txt"))
    assert msg == f"column 'txt' not found in {path}; columns are: text, category (use --text-column)"
    path2 = write(tmp_path / "nolabel.csv", csv_text(header="text,stars"))
    msg = user_error(load_splits, DataArgs(train=path2))
    assert "text, stars" in msg and "--label-column" in msg


def test_missing_file_and_unknown_extension(tmp_path):
    msg = user_error(load_table, str(tmp_path / "nope.csv"))
    assert "nope.csv" in msg and "no such file" in msg
    path = write(tmp_path / "data.xyz", "a,b\n")
    assert "--delimiter" in user_error(load_table, path)
    assert "save the sheet as CSV" in user_error(load_table, write(tmp_path / "book.xlsx", "PK"))
    assert "empty" in user_error(load_table, write(tmp_path / "empty.csv", ""))


def test_hub_id_not_tried_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = user_error(load_splits, DataArgs(train="someone/some_dataset"))
    assert "someone/some_dataset" in msg and "HF_HUB_OFFLINE" in msg


def test_empty_text_names_rows(tmp_path):
    rows = ROWS[:2] + [("   ", "pos"), ("", "neg")] + ROWS[2:]
    path = write(tmp_path / "e.csv", "\n".join(["text,label"] + [f'"{t}",{l}' for t, l in rows]) + "\n")
    msg = user_error(load_labeled, path, DataArgs())
    assert "rows 3, 4" in msg and "remove or fill" in msg


def test_missing_label_names_rows(tmp_path):
    path = write(tmp_path / "m.csv", "text,label\na,pos\nb,\nc,neg\nd, \n")
    msg = user_error(load_labeled, path, DataArgs())
    assert "missing label" in msg and "rows 2, 4" in msg


def test_class_too_small_for_stratified_split(tmp_path):
    path = write(tmp_path / "t.csv", csv_text(balanced({"a": 20, "b": 20, "rare": 2})))
    msg = user_error(load_splits, DataArgs(train=path))  # validation + test: needs 3 per class
    assert "'rare'" in msg and "only 2 examples" in msg and "--validation" in msg
    # with a single held-out split, two examples suffice
    s = load_splits(DataArgs(train=path, test_fraction=0, validation_fraction=0.2))
    assert "rare" in s.labels and len(s.test or []) == 0


def test_labels_unseen_in_training_data(tmp_path):
    train = write(tmp_path / "train.csv", csv_text(balanced({"a": 5, "b": 5})))
    val = write(tmp_path / "val.csv", csv_text([("x", "a"), ("y", "zzz")]))
    msg = user_error(load_splits, DataArgs(train=train, validation=val, test_fraction=0))
    assert "zzz" in msg and "val.csv" in msg


# ---------------------------------------------------------------------------- splits


def test_split_is_stratified_and_deterministic(tmp_path):
    rows = balanced({"a": 60, "b": 30, "c": 10})
    path = write(tmp_path / "t.csv", csv_text(rows))
    args = DataArgs(train=path, validation_fraction=0.2, test_fraction=0.1)
    s1, s2 = load_splits(args, seed=7), load_splits(args, seed=7)
    assert (len(s1.train), len(s1.validation), len(s1.test)) == (70, 20, 10)
    for split in ("train", "validation", "test"):
        assert rows_of(getattr(s1, split)) == rows_of(getattr(s2, split))
    names = s1.labels
    assert Counter(names[i] for i in s1.validation["labels"]) == {"a": 12, "b": 6, "c": 2}
    assert Counter(names[i] for i in s1.test["labels"]) == {"a": 6, "b": 3, "c": 1}
    all_texts = [t for split in ("train", "validation", "test") for t, _ in rows_of(getattr(s1, split))]
    assert sorted(all_texts) == sorted(t for t, _ in rows), "splits must partition the data"
    s3 = load_splits(args, seed=8)
    assert rows_of(s3.validation) != rows_of(s1.validation)


def test_held_out_splits_are_capped_and_unchanged_below_the_cap(tmp_path):
    rows = balanced({"a": 60, "b": 30, "c": 10})
    path = write(tmp_path / "t.csv", csv_text(rows))
    from sklearn.model_selection import train_test_split

    below = load_splits(DataArgs(train=path, validation_fraction=0.2, test_fraction=0.1, max_held_out=20), seed=7)
    # Below the cap the split is sklearn's fractional one, as before the cap existed.
    labels = [label for _, label in rows]
    _, expected_test = train_test_split(range(100), test_size=0.1, random_state=7, shuffle=True, stratify=labels)
    assert sorted(t for t, _ in rows_of(below.test)) == sorted(rows[i][0] for i in expected_test)
    assert (len(below.train), len(below.validation), len(below.test)) == (70, 20, 10)
    capped = load_splits(DataArgs(train=path, validation_fraction=0.2, test_fraction=0.1, max_held_out=6), seed=7)
    assert (len(capped.train), len(capped.validation), len(capped.test)) == (88, 6, 6)
    assert any("--max-held-out" in note for note in capped.notes)
    with pytest.raises(UserError, match="max-held-out"):
        DataArgs(max_held_out=0)


def test_max_examples(tmp_path):
    path = write(tmp_path / "t.csv", csv_text(balanced({"a": 20, "b": 20})))
    args = DataArgs(train=path, validation_fraction=0, test_fraction=0, max_examples=10)
    s = load_splits(args, seed=1)
    assert len(s.train) == 10
    assert rows_of(s.train) == rows_of(load_splits(args, seed=1).train)
    assert any("max-examples" in n for n in s.notes)


def test_integer_labels_are_named_and_sorted_numerically(tmp_path):
    rows = balanced({"2": 3, "10": 3, "0": 3})
    ds = load_labeled(write(tmp_path / "i.jsonl", "\n".join(json.dumps({"text": t, "label": int(l)}) for t, l in rows)),
                      DataArgs())
    assert ds.features["labels"].names == ["0", "2", "10"]
    assert rows_of(ds) == rows
    csv_ds = load_labeled(write(tmp_path / "i.csv", csv_text(rows)), DataArgs())
    assert csv_ds.features["labels"].names == ["0", "2", "10"]


# ---------------------------------------------------------------------------- multi-label


@pytest.mark.parametrize("lines, fragments", [
    (['{"text": "a", "label": "x"}', '{"text": "b", "label": "y"}', '{"text": "c" "label": "y"}'],
     ("line 3 of", "not valid JSON", "column 14")),
    (['{"text": "a", "label": "x"}', '[1, 2]'], ("line 2 of", "not a JSON object")),
])
def test_bad_json_lines_are_named_by_line(tmp_path, lines, fragments):
    msg = user_error(load_labeled, write(tmp_path / "bad.jsonl", "\n".join(lines) + "\n"), DataArgs())
    assert "bad.jsonl" in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_multi_label_from_json_lists(tmp_path):
    recs = [{"text": "t1", "labels": ["sports", "news"]}, {"text": "t2", "labels": ["art"]},
            {"text": "t3", "labels": []}, {"text": "t4", "labels": ["news"]}] * 3
    path = write(tmp_path / "m.jsonl", "\n".join(json.dumps(r) for r in recs))
    s = load_splits(DataArgs(train=path, multi_label=True, validation_fraction=0.25, test_fraction=0), seed=3)
    assert s.multi_label and s.labels == ["art", "news", "sports"]
    assert len(s.train) == 9 and len(s.validation) == 3
    ds = load_labeled(path, DataArgs(multi_label=True))
    assert ds[0]["labels"] == [0.0, 1.0, 1.0]
    assert ds[2]["labels"] == [0.0, 0.0, 0.0]
    assert any("random" in n for n in s.notes)


def test_multi_label_from_delimited_string(tmp_path):
    path = write(tmp_path / "m.csv", 'text,labels\nt1,"b, a"\nt2,c\nt3,a|x\n')
    ds = load_labeled(path, DataArgs(multi_label=True, label_delimiter=","), labels=["a", "a|x", "b", "c"])
    assert ds["labels"] == [[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]]
    path2 = write(tmp_path / "m2.csv", "text,labels\nt1,b|a\nt2,c\n")
    ds2 = load_labeled(path2, DataArgs(multi_label=True, label_delimiter="|"))
    assert ds2["labels"] == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_lists_without_multi_label_flag(tmp_path):
    path = write(tmp_path / "m.jsonl", json.dumps({"text": "t", "label": ["a", "b"]}))
    assert "--multi-label" in user_error(load_labeled, path, DataArgs())


# ---------------------------------------------------------------------------- load_labeled with the model's labels


def test_load_labeled_uses_model_label_order(tmp_path):
    path = write(tmp_path / "e.csv", csv_text())
    ds = load_labeled(path, DataArgs(), labels=["pos", "neg", "other"])
    assert ds.features["labels"].names == ["pos", "neg", "other"]
    assert ds["labels"][:2] == [0, 1]


def test_load_labeled_unknown_labels(tmp_path):
    rows = ROWS + [(f"t{i}", f"new{i}") for i in range(7)]
    path = write(tmp_path / "e.csv", csv_text(rows))
    msg = user_error(load_labeled, path, DataArgs(), labels=["neg", "pos"])
    assert "new0, new1, new2, new3, new4 (and 2 more)" in msg
    assert "neg, pos" in msg and "e.csv" in msg


# ---------------------------------------------------------------------------- demo


def test_demo_dataset_by_default():
    import importlib.resources

    demo = Path(str(importlib.resources.files("acceltune") / "demo_data"))
    if not (demo / "train.csv").is_file():
        pytest.skip("packaged demo dataset not written yet")
    s = load_splits(DataArgs(), seed=42)
    assert len(s.labels) >= 2 and s.train is not None and len(s.train) > 0
    assert s.validation is not None and s.train.column_names == ["text", "labels"]
    if (demo / "test.csv").is_file():
        assert s.test is not None and len(s.test) > 0
    assert any("demo" in n for n in s.notes)
