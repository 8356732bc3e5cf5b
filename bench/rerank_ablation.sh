#!/bin/sh
# Ablations of the shallow cross-encoder (docs/reranking.md): BCE vs gBCE,
# 1 / 8 / 32 negatives, depth 1 / 2 / 4 / 6, and the head on [CLS] alone
# against [CLS] + span markers. Every run trains on the same mined
# candidates for the same number of updates (train-rerank's defaults
# otherwise: lr 2e-4, 64 tokens, curriculum 0.2) and reports reranking of
# the validation questions' top-20 mined phrases. The depth runs are the
# rerankers of bench/rerank_budget_sweep.sh.
#
#   bench/rerank_ablation.sh [OUT_DIR] [PHREX]       (run from the repository root)
#
# Env: STEPS (updates per run, default 600), BATCH (questions per update, 4),
# SEQ (max_seq_len, 64), THREADS (2), VALID (validation questions, 300),
# MODEL (the phrase model that mines, default models/phrase), ONLY (a
# space-separated subset of run names). Mining runs once per OUT_DIR.
# About 35 minutes on 2 idle cores.
set -eu
OUT=${1:-out/rerank-ablation}
PHREX=${2:-build/phrex}
STEPS=${STEPS:-600}
BATCH=${BATCH:-4}
SEQ=${SEQ:-64}
THREADS=${THREADS:-2}
VALID=${VALID:-300}
MODEL=${MODEL:-models/phrase}
export OMP_WAIT_POLICY=passive
mkdir -p "$OUT"

mine() { # $1 split name, $2 titles file
    if [ ! -s "$OUT/mine-$1/candidates.jsonl" ]; then
        "$PHREX" train-rerank --mine --titles "$2" --out "$OUT/mine-$1" --model "$MODEL" --threads "$THREADS"
    fi
}
mine train data/splits/squad_train_titles.txt
mine valid data/splits/squad_valid_titles.txt

run() { # $1 name, then train-rerank options
    name=$1; shift
    case " ${ONLY:-$name} " in *" $name "*) ;; *) return 0 ;; esac
    rm -rf "$OUT/$name"
    start=$(date +%s)
    "$PHREX" train-rerank --out "$OUT/$name" --candidates "$OUT/mine-train/candidates.jsonl" \
        --valid-candidates "$OUT/mine-valid/candidates.jsonl" --steps "$STEPS" --batch "$BATCH" \
        --max-seq-len "$SEQ" --threads "$THREADS" --limit-valid "$VALID" --valid-k 20 --checkpoint-every 0 "$@" \
        | tee "$OUT/$name.out"
    echo "$name $(($(date +%s) - start)) s: $*" >> "$OUT/times.txt"
}

# Loss: gBCE (t = 0.75) against plain BCE (t = 0), 8 negatives, 2 layers.
run gbce-n8-l2 --layers 2 --negatives 8 --t 0.75
run bce-n8-l2 --layers 2 --negatives 8 --t 0
# Negatives per question (gBCE, 2 layers).
run gbce-n1-l2 --layers 2 --negatives 1 --t 0.75
run gbce-n32-l2 --layers 2 --negatives 32 --t 0.75
# Depth (gBCE, 8 negatives).
run gbce-n8-l1 --layers 1 --negatives 8 --t 0.75
run gbce-n8-l4 --layers 4 --negatives 8 --t 0.75
run gbce-n8-l6 --layers 6 --negatives 8 --t 0.75
# What the head reads: [CLS] alone (the first recipe) against [CLS] + markers.
run cls-n8-l2 --layers 2 --negatives 8 --t 0.75 --head-pool cls

# One table: run, reranked accuracy@1, MRR, retriever accuracy@1.
printf '%-14s %8s %8s %8s %8s\n' run acc@1 MRR retr@1 recall
for f in "$OUT"/*/valid_metrics.json; do
    n=$(basename "$(dirname "$f")")
    python3 - "$f" "$n" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print("%-14s %8.2f %8.4f %8.2f %8.2f" % (sys.argv[2], m["reranked_accuracy_at_1"], m["reranked_mrr"],
      m["retriever_accuracy_at_1"], m["recall_at_k"]))
PY
done
