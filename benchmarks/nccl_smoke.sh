#!/usr/bin/env bash
# NCCL smoke test for data-parallel training on GPUs (not yet run: the project's CI has no GPU).
#
#   bash benchmarks/nccl_smoke.sh [MAX_STEPS] [BATCH_SIZE]      (from the repository root)
#
# Trains the packaged MiniLM on the packaged demo dataset with `acceltune train --nproc-per-node 1`
# and then 2 (one process per GPU, NCCL), --max-steps each, and prints one JSON line per run:
#   {"world_size": ..., "backend": "nccl"|"none", "samples_per_second": ..., "validation_accuracy": ..., ...}
# and a last line with the 2-GPU/1-GPU throughput ratio. Exit code non-zero if a run fails.
# Needs at least 2 visible GPUs for the NCCL part; with one GPU it runs the 1-process baseline and
# says that NCCL was skipped. Set PYTHON to choose the interpreter (default: .venv/bin/python or python).
set -euo pipefail

MAX_STEPS="${1:-60}"
BATCH="${2:-32}"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/acceltune-nccl-smoke.XXXXXX")"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
# A local, un-networked machine: keep NCCL on shared memory / NVLink / PCIe, never a missing NIC.
export NCCL_IB_DISABLE="${NCCL_IB_DISABLE:-1}"

GPUS="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')"
if [ "$GPUS" -lt 1 ]; then
  echo '{"error": "no CUDA GPU visible: this is a GPU smoke test"}'
  exit 1
fi

run() {  # run NPROC
  local n="$1" out="$WORK/run-$1"
  local t0 t1
  t0="$(date +%s.%N)"
  if ! "$PYTHON" -m acceltune train --device cuda --nproc-per-node "$n" --max-steps "$MAX_STEPS" \
        --batch-size "$BATCH" --eval-every "$MAX_STEPS" --log-every 10 --output-dir "$out" --overwrite \
        >"$WORK/run-$n.stdout" 2>"$WORK/run-$n.stderr"; then
    echo "{\"world_size\": $n, \"error\": \"acceltune train failed\", \"stderr\": \"$WORK/run-$n.stderr\"}"
    tail -n 40 "$WORK/run-$n.stderr" >&2
    return 1
  fi
  t1="$(date +%s.%N)"
  "$PYTHON" - "$out" "$n" "$t0" "$t1" "$WORK/run-$n.stderr" "$BATCH" <<'EOF'
import json, sys
out, n, t0, t1, err = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
m = json.load(open(f"{out}/metrics.json"))
assert m["world_size"] == n, f"world_size {m['world_size']} != {n}"
log = open(err).read()
train = [json.loads(l) for l in open(f"{out}/log.jsonl") if '"kind": "train"' in l]
steady = [r["samples_per_second"] for r in train[1:]] or [r["samples_per_second"] for r in train]
print(json.dumps({
    "world_size": m["world_size"],
    "backend": "nccl" if n > 1 and m["device"].startswith("cuda") else "none",
    "device": m["device"], "precision": m["precision"],
    "per_device_batch": int(sys.argv[6]),
    "global_steps": m["global_steps"],
    "samples_per_second": round(sum(steady) / len(steady), 2),  # after the first logging window (warm-up)
    "samples_per_second_with_warmup": m["train_samples_per_second"],
    "train_runtime_s": m["train_runtime_s"],
    "wall_s": round(t1 - t0, 1),
    "validation_accuracy": round(m["validation"]["accuracy"], 4) if "validation" in m else None,
    "test_accuracy": round(m["test"]["accuracy"], 4) if "test" in m else None,
    "nccl_warnings": sum("NCCL WARN" in line for line in log.splitlines()),
}))
EOF
}

run 1 | tee "$WORK/one.json"
if [ "$GPUS" -lt 2 ]; then
  echo "{\"nccl\": \"skipped: $GPUS GPU visible, the NCCL run needs 2 (one process per GPU)\"}"
  exit 0
fi
CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0,1}" run 2 | tee "$WORK/two.json"
"$PYTHON" - "$WORK/one.json" "$WORK/two.json" <<'EOF'
import json, sys
one, two = (json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[1:3])
print(json.dumps({"scaling_2_over_1": round(two["samples_per_second"] / one["samples_per_second"], 3),
                  "note": "global batch doubles with 2 GPUs (per-device batch fixed); ideal scaling is 2.0"}))
EOF
rm -rf "$WORK"
