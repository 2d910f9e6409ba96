"""Out-of-scope anchors: does scoring against the validation out-of-scope messages generalise? (lab check)

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/oos_banking77_anchors.py runs/oos_banking77/model

For a model trained on benchmarks/oos_banking77.py's split (run that first; its data dir is read), prints one
JSON object: each shipped score's test AUROC and best OOS recall at in-scope accuracy >= 0.90, then the
"anchored" score (Mahalanobis to the nearest class mean minus the mean distance to the k nearest validation
out-of-scope messages, same precision matrix), first with every validation out-of-scope message as an anchor
(the test's out-of-scope messages share their 10 intents), then with anchors from 5 held-out intents and
the test restricted to in-scope messages plus the other 5 intents (mean of 3 random halvings). The model's
outputs are cached in MODEL_DIR/explore_outputs.npz.
"""
import json
import sys
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
import oos_banking77 as B
from acceltune.inference.backends.base import Outputs
from acceltune.oos.rule import Calibration, fit_scores
from acceltune.oos.scores import MSP, mahalanobis_min, mahalanobis_pairwise
from acceltune.oos.calibration import auroc, best_recall_at, sweep

model_dir = Path(sys.argv[1]); data = B.ROOT / "runs" / "oos_banking77" / "data"; shared = B.ROOT.parent / "shared" / "data" / "banking77"
cache = model_dir / "explore_outputs.npz"
rows = {n: B.read_rows(data / f"{n}.csv") for n in ("train", "validation", "test")}
if cache.is_file():
    z = np.load(cache); out = {n: (Outputs(z[n + "_l"], z[n + "_f"]), z[n + "_y"]) for n in rows}
    labels = json.loads(str(z["labels"]))
else:
    from acceltune.inference.predictor import Predictor
    p = Predictor(model_dir, backend="torch"); labels = p.labels
    out = {n: B.rate(p, rows[n]) for n in rows}
    np.savez(cache, labels=json.dumps(labels), **{f"{n}_{k}": v for n, (o, y) in out.items() for k, v in (("l", o.logits), ("f", o.features), ("y", y))})
oi = labels.index("oos"); ins = np.array([i for i in range(len(labels)) if i != oi])
(tr, ty), (va, vy), (te, tey) = out["train"], out["validation"], out["test"]
orig = {t: c for t, c in B.read_rows(shared / "train.csv")}
orig_test = [c for t, c in B.read_rows(shared / "test.csv")]
val_intent = np.array([orig[t] if c == "oos" else c for t, c in rows["validation"]])
test_intent = np.array(orig_test)
held = sorted(set(val_intent[vy == oi]))
fitted = fit_scores(Calibration(tr, ty, va, vy), ins, extra=(MSP,))
res = {"no_threshold_acc": float((te.logits.argmax(1) == tey)[tey != oi].mean())}

def evaluate(score_te, mask):
    t_oos = (tey == oi)[mask]; correct = (te.logits.argmax(1) == tey)[mask]; forced = (te.logits.argmax(1) == oi)[mask]
    s = score_te[mask]
    return {"auroc": round(auroc(t_oos, s), 4), "best@0.90": round(best_recall_at(sweep(s, t_oos, correct, forced), 0.90)["oos_recall"], 3)}

allm = np.ones(len(tey), bool)
for name, s in fitted.items():
    res[name] = evaluate(s.score(te.logits, te.features), allm)
# anchored Mahalanobis: d_in - d_anchor (k nearest anchors, mean of k smallest)
M = fitted["mahalanobis"]; P = M.arrays["precision"]; means = M.arrays["means"]
def pair_d(x, a):
    return mahalanobis_pairwise(x, a.astype(np.float64), P)
d_in_te = mahalanobis_min(te.features, means, P)
def anchored(anchor_mask, k=1, mode="knn"):
    A = va.features[anchor_mask]
    if mode == "mean":
        d_a = pair_d(te.features, A.mean(0, keepdims=True))[:, 0]
    else:
        d = np.sort(pair_d(te.features, A), 1)[:, :k]; d_a = d.mean(1)
    return d_in_te - d_a
val_oos = vy == oi
for k in (1, 3, 5):
    res[f"anchored_k{k}_same_intents"] = evaluate(anchored(val_oos, k), allm)
res["anchored_mean_same_intents"] = evaluate(anchored(val_oos, mode="mean"), allm)
# disjoint: anchors from half the held-out intents, test on the other half's test OOS
rng = np.random.default_rng(1); disj = {}
for rep in range(3):
    perm = rng.permutation(held); A, Bh = set(perm[:5]), set(perm[5:])
    amask = val_oos & np.isin(val_intent, list(A))
    tmask = ~np.isin(test_intent, list(A))  # in-scope + B intents
    for nm, sc in [("mahalanobis", d_in_te), ("energy", fitted["energy"].score(te.logits, te.features)),
                   ("anchored_k1", anchored(amask, 1)), ("anchored_k5", anchored(amask, 5)), ("anchored_mean", anchored(amask, mode="mean"))]:
        disj.setdefault(nm, []).append(evaluate(sc, tmask))
res["disjoint_intents(mean of 3 halvings)"] = {nm: {k: round(float(np.mean([e[k] for e in v])), 3) for k in v[0]} for nm, v in disj.items()}
print(json.dumps(res, indent=1))
