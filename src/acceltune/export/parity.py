"""The export's parity check: the exported directory against the torch model, on the same padded batches.

Both outputs are compared, logits and pooled features. What has to hold depends on the export:

* fp32 ONNX: the same numbers (max |difference| <= FP32_TOLERANCE, features relative to their scale).
* int8 ONNX, judged by what users get: on labelled parity data, accuracy within MAX_ACCURACY_DROP
  points of the fp32 model's (one text's worth on fewer than 200 labelled texts); without labels, the same label on (at least INT8_MIN_AGREEMENT of) the
  predictions the fp32 model is confident about. A briefly trained model has many near-ties that
  int8 flips either way without costing accuracy; those do not count against it. Feature drift is
  recorded (cosine similarity), not judged: it is the price of int8, the user decides.
* TensorRT fp16: label agreement >= TRT_MIN_AGREEMENT.

With an out-of-scope rule (acceltune.oos), the share of texts whose out-of-scope decision is the same is
recorded too (``oos_agreement``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from acceltune.errors import UserError
from acceltune.inference.backends.base import Outputs

FP32_TOLERANCE = 1e-3
INT8_MIN_AGREEMENT = 0.99
MAX_ACCURACY_DROP = 0.5  # accuracy points
CONFIDENT = 0.5  # an fp32 prediction is confident when its top probability reaches this
CONFIDENT_MULTI_LABEL_MARGIN = 0.25  # multi-label: a label decision is confident at p >= 0.75 or p <= 0.25
TRT_MIN_AGREEMENT = 0.99
PARITY_MAX_TEXTS = 512

BUILTIN_SENTENCES = [
    "I still have not received my new card, I ordered over a week ago.",
    "How do I locate my card?",
    "The movie was a complete waste of time.",
    "Absolutely loved it, would recommend to anyone!",
    "Can I top up my account with a cheque?",
    "My transfer has been pending for three days, what is going on?",
    "ok",
    "Why was I charged a fee for withdrawing cash abroad when the app said it would be free of charge?",
    "The service was fine, nothing special.",
    "Please cancel the transaction I made this morning.",
    "What exchange rate will I get?",
    "terrible",
]


@dataclass
class ParityData:
    """Texts for the check, their gold labels where the file has a label column (strings, else None), and where they came from."""

    texts: list[str]
    labels: list[str] | None
    source: str


# ------------------------------------------------------------------------------------------- data


def spread_indices(n: int, limit: int = PARITY_MAX_TEXTS) -> np.ndarray:
    """At most `limit` indices evenly spread over range(n), not just its head."""
    if n <= limit:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(int)


def read_parity_data(path: str | os.PathLike, text_column: str | None = None, label_column: str | None = None,
                     limit: int = PARITY_MAX_TEXTS, **read_options) -> ParityData:
    """Parity texts from any file `acceltune predict` reads (CSV/TSV/JSON/JSONL/Parquet/text), spread out;
    labels from `label_column`, else the first usual label column (label, category, intent, ...), if any."""
    from acceltune.data import load_texts
    from acceltune.data.validate import LABEL_CANDIDATES

    texts, _, table = load_texts(str(path), text_column, **read_options)
    if not texts:
        raise UserError(f"{path} holds no texts")
    idx = spread_indices(len(texts), limit)
    column = label_column if label_column in table.column_names else next((c for c in LABEL_CANDIDATES if c in table.column_names), None)
    labels = None
    if column is not None:
        values = table[column]
        labels = [None if values[i] is None else str(values[i]).strip() for i in idx]
    return ParityData([texts[i] for i in idx], labels, str(path))


def default_parity_data(model_dir: Path | None = None) -> ParityData:
    """In-domain texts when the model's training data is still where training_config.yaml says
    (test, then validation, then train), else the demo test set, else built-in sentences."""
    found = _training_data(model_dir)
    if found is not None:
        return found
    demo = Path(__file__).resolve().parents[1] / "demo_data" / "test.csv"
    if demo.is_file():
        try:
            return read_parity_data(demo)
        except UserError:
            pass
    return ParityData(list(BUILTIN_SENTENCES), None, "built-in sentences")


def _training_data(model_dir: Path | None) -> ParityData | None:
    """Out-of-domain texts sit near decision boundaries and understate int8 agreement, so the model's
    own (held-out) data is the better parity sample."""
    from acceltune.modeldir import TRAINING_CONFIG_FILE

    cfg_path = Path(model_dir) / TRAINING_CONFIG_FILE if model_dir else None
    if cfg_path is None or not cfg_path.is_file():
        return None
    import yaml

    data = (yaml.safe_load(cfg_path.read_text()) or {}).get("data", {})
    for key in ("test", "validation", "train"):
        path = data.get(key)
        if not path or not Path(path).exists():
            continue
        try:
            return read_parity_data(path, data.get("text_column"), data.get("label_column"), delimiter=data.get("delimiter"),
                                    encoding=data.get("encoding") or "utf-8", column_names=data.get("column_names"))
        except UserError:
            continue
    return None


# ----------------------------------------------------------------------------------------- check

Reference = Callable[[dict[str, np.ndarray]], Outputs]


def torch_reference(model) -> Reference:
    """The torch model (a WithFeatures) as a run function on padded numpy batches."""
    import torch

    @torch.inference_mode()
    def run(batch: dict[str, np.ndarray]) -> Outputs:
        logits, features = model(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()})
        return Outputs(logits.float().numpy(), None if features is None else features.float().numpy())

    return run


def check_parity(reference: Reference, export_dir: Path, data: ParityData | Sequence[str], quantization: str | None,
                 fmt: str, backend: str = "onnx", device: str = "auto", *, min_agreement: float | None = None,
                 max_accuracy_drop: float | None = None) -> dict:
    """Score the parity texts with the exported directory and with ``reference`` on the very same padded batches.

    For int8, ``min_agreement`` (given) judges by agreement on confident predictions even where labels exist;
    otherwise labels decide by accuracy (``max_accuracy_drop`` points, default MAX_ACCURACY_DROP)."""
    from acceltune.inference.predictor import Predictor

    if not isinstance(data, ParityData):
        data = ParityData(list(data), None, "given texts")
    texts = data.texts
    pred = Predictor(export_dir, backend=backend, device=device)
    pairs = list(texts[1:]) + list(texts[:1]) if pred.info.text_pair else None

    def both(batch):
        got, ref = pred.backend.forward(batch), reference(batch)
        return got.logits, got.features, ref.logits, ref.features

    got, got_f, ref, ref_f = pred.runner.run(pred.encode(texts, pairs), both)
    multi = pred.info.multi_label
    ref_labels, got_labels = (ref >= 0, got >= 0) if multi else (ref.argmax(1), got.argmax(1))
    result = {"texts": len(texts), "max_abs_logit_diff": float(np.max(np.abs(ref - got))),
              "label_agreement": float(np.mean(ref_labels == got_labels))}
    result.update(_feature_parity(ref_f, got_f))
    if pred.oos_rule is not None:  # recorded, not judged: a flip is a message whose score sits at the threshold
        ref_oos, _ = pred.oos_rule.apply(Outputs(ref, ref_f))
        got_oos, _ = pred.oos_rule.apply(Outputs(got, got_f))
        result["oos_agreement"] = float(np.mean(ref_oos == got_oos))
        result["oos_flagged"] = int(ref_oos.sum())
    confident = _confident(pred.probabilities(ref), multi)
    result["confident_predictions"] = int(confident.sum())
    result["confident_agreement"] = float(np.mean((ref_labels == got_labels)[confident])) if confident.any() else result["label_agreement"]
    gold = None if multi or data.labels is None else _gold_indices(data.labels, pred.labels)
    if gold is not None:
        known = gold >= 0
        result["labelled_texts"] = int(known.sum())
        result["reference_accuracy"] = float(np.mean(ref_labels[known] == gold[known]))
        result["accuracy"] = float(np.mean(got_labels[known] == gold[known]))
        result["accuracy_drop_points"] = round(100 * (result["reference_accuracy"] - result["accuracy"]), 4)

    if fmt == "tensorrt":
        criterion, ok = f"label agreement >= {TRT_MIN_AGREEMENT:.0%} (fp16)", result["label_agreement"] >= TRT_MIN_AGREEMENT
    elif quantization == "int8":
        if gold is not None and min_agreement is None:
            # By default at least one text's worth: on fewer than 200 labelled texts a smaller drop cannot be measured.
            drop = max(MAX_ACCURACY_DROP, 100 / result["labelled_texts"]) if max_accuracy_drop is None else max_accuracy_drop
            criterion, ok = f"int8 accuracy within {drop:.2g} points of fp32", result["accuracy_drop_points"] <= drop + 1e-9
        else:
            need = INT8_MIN_AGREEMENT if min_agreement is None else min_agreement
            criterion = f"label agreement >= {need:.2%} on confident predictions (fp32 probability >= {CONFIDENT:g})"
            ok = result["confident_agreement"] >= need
    else:
        criterion = f"max |logit difference| <= {FP32_TOLERANCE:g}"
        ok = result["max_abs_logit_diff"] <= FP32_TOLERANCE
        if "max_rel_feature_diff" in result:
            criterion += f" and max |feature difference| <= {FP32_TOLERANCE:g} (relative to the largest feature)"
            ok = ok and result["max_rel_feature_diff"] <= FP32_TOLERANCE
    return {**result, "source": data.source, "criterion": criterion, "passed": bool(ok)}


def _feature_parity(ref: np.ndarray | None, got: np.ndarray | None) -> dict:
    if ref is None or got is None:
        return {}
    diff = float(np.max(np.abs(ref - got)))
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    cosine = np.sum(ref * got, axis=1) / np.maximum(norms, 1e-12)
    return {"max_abs_feature_diff": diff, "max_rel_feature_diff": diff / max(1.0, float(np.max(np.abs(ref)))),
            "feature_cosine_min": float(cosine.min()), "feature_cosine_mean": float(cosine.mean())}


def _confident(probs: np.ndarray, multi: bool) -> np.ndarray:
    """Which fp32 decisions are confident: per text (single-label) or per text and label (multi-label)."""
    if multi:
        return np.abs(probs - 0.5) >= CONFIDENT_MULTI_LABEL_MARGIN
    return probs.max(1) >= CONFIDENT


def _gold_indices(labels: list[str | None], names: list[str]) -> np.ndarray | None:
    """Gold label indices (-1 for a label the model does not know); None when the column names none of its labels."""
    index = {n: i for i, n in enumerate(names)}
    gold = np.array([index.get(v, -1) if v is not None else -1 for v in labels], dtype=np.int64)
    return gold if (gold >= 0).any() else None
