#!/usr/bin/env bash
# Quality against latency budget for rerankers of several depths (issue 6):
# for each reranker and each budget, `phrex eval --reranker DIR --budget-ms B`
# over the validation questions, plus one run without reranking; then a
# table (Markdown + TSV) and an SVG plot of EM against budget, one line per
# reranker, for docs/RESULTS.md. With --trec, the same rerankers also go
# through `phrex rerank-eval --budgets` on TREC DL 2019 and 2020 (nDCG@10).
#
# With --tune-qa FILE, each reranker's combine weight is first tuned on
# those questions (phrex eval --tune-weight, 20 candidates reranked) and the
# budget runs use it; keep FILE apart from --qa (e.g. alternate validation
# questions) so the weight is not tuned on the questions it is scored on.
#
# Run it on an idle machine: the numbers are latencies.
#
#   bench/rerank_budget_sweep.sh --dump DUMP --qa VALID_QA --out DIR \
#       [--reranker NAME=DIR]... [--budgets 5,10,25,50,100] [--threads N] \
#       [--tune-qa FILE] [--limit N] [--trec] [-- extra phrex eval options (--nprobe, --question-threads ...)]
#
# Example (docs/RESULTS.md §4; the dump from bench/odqa_bench.sh, the
# rerankers from bench/rerank_ablation.sh):
#   awk 'NR%4==1' out/odqa/squad-valid.jsonl > out/rr/valid-tune.jsonl
#   awk 'NR%4==3' out/odqa/squad-valid.jsonl > out/rr/valid-report.jsonl
#   bench/rerank_budget_sweep.sh --dump out/odqa/dump-ivfsq8 --qa out/rr/valid-report.jsonl \
#       --tune-qa out/rr/valid-tune.jsonl --reranker d1=out/rr/abl/gbce-n8-l1 \
#       --reranker d2=out/rr/abl/gbce-n8-l2 --reranker d4=out/rr/abl/gbce-n8-l4 \
#       --reranker d6=out/rr/abl/gbce-n8-l6 --reranker default=models/reranker \
#       --out out/rr/sweep --trec -- --nprobe 16 --question-threads 2
# Outputs: DIR/table.md, DIR/table.tsv, DIR/em_vs_budget.svg, DIR/<name>-<budget>/summary.json
# (and DIR/trec-<name>-dl19/summary.json ... with --trec).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
PHREX=${PHREX:-$root/build/phrex}
PYTHON=${PYTHON:-/usr/bin/python3}
DL=${PHREX_SHARED_DIR:-$root/../shared}/data/msmarco-trec-dl

dump="" qa="" out="" budgets="5,10,25,50,100" threads=1 limit="" trec=0 tune_qa=""
names=() dirs=() extra=()
die() { echo "rerank_budget_sweep: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dump) dump=$2; shift 2 ;;
    --qa) qa=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --budgets) budgets=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --tune-qa) tune_qa=$2; shift 2 ;;
    --trec) trec=1; shift ;;
    --reranker)
      case "$2" in *=*) ;; *) die "--reranker expects NAME=DIR, got '$2'" ;; esac
      names+=("${2%%=*}"); dirs+=("${2#*=}"); shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ -n "$dump" ] && [ -n "$qa" ] && [ -n "$out" ] || die "--dump, --qa and --out are required"
[ ${#names[@]} -gt 0 ] || die "give at least one --reranker NAME=DIR"
[ -x "$PHREX" ] || die "no phrex binary at $PHREX (set PHREX=...)"
for d in "${dirs[@]}"; do [ -f "$d/phrex_reranker.json" ] || die "$d is not a reranker folder"; done
IFS=',' read -r -a blist <<< "$budgets"
for b in "${blist[@]}"; do
  "$PYTHON" -c "import sys; sys.exit(0 if float('$b') > 0 else 1)" 2>/dev/null || die "budget '$b' must be > 0"
done
mkdir -p "$out"
# No OMP_WAIT_POLICY=passive here: with --question-threads the encoder's many
# short parallel regions then sleep and wake their threads each time, and
# the kernel's scheduling took over half of the time (perf) of a question.
common=(--dump "$dump" --qa "$qa" --threads "$threads")
[ -n "$limit" ] && common+=(--limit "$limit")

run_eval() { # out_dir, extra args...
  local dir=$1; shift
  echo "== phrex eval $* -> $dir" >&2
  "$PHREX" eval "${common[@]}" "${extra[@]}" --out "$dir" "$@" > "$dir.log" 2>&1 || {
    echo "rerank_budget_sweep: phrex eval failed, see $dir.log" >&2; tail -5 "$dir.log" >&2; exit 1; }
}

# The combine weight of reranker i: tuned on --tune-qa, else the reranker's own.
weights=()
for i in "${!names[@]}"; do
  weights+=("")
  [ -n "$tune_qa" ] || continue
  d="$out/tune-${names[$i]}"
  echo "== phrex eval --tune-weight ${names[$i]} -> $d" >&2
  "$PHREX" eval --dump "$dump" --qa "$tune_qa" --threads "$threads" "${extra[@]}" --reranker "${dirs[$i]}" \
    --rerank-k 20 --tune-weight --out "$d" > "$d.log" 2>&1 || {
    echo "rerank_budget_sweep: weight tuning failed, see $d.log" >&2; tail -5 "$d.log" >&2; exit 1; }
  weights[$i]=$("$PYTHON" -c "import json,sys; print(json.load(open(sys.argv[1]))['rerank_weight_tuned'])" "$d/summary.json")
  echo "   ${names[$i]}: weight ${weights[$i]}" >&2
done

run_eval "$out/none" --no-rerank
for i in "${!names[@]}"; do
  wopt=(); [ -n "${weights[$i]}" ] && wopt=(--rerank-weight "${weights[$i]}")
  for b in "${blist[@]}"; do
    run_eval "$out/${names[$i]}-$b" --reranker "${dirs[$i]}" --budget-ms "$b" "${wopt[@]}"
  done
done

if [ "$trec" = 1 ]; then
  for i in "${!names[@]}"; do
    for year in dl19 dl20; do
      q=$DL/qrels.dl20-passage.txt; [ $year = dl19 ] && q=$DL/qrels.dl19-passage.txt
      d="$out/trec-${names[$i]}-$year"
      echo "== phrex rerank-eval ${names[$i]} $year -> $d" >&2
      "$PHREX" rerank-eval --reranker "${dirs[$i]}" --qrels "$q" --run "$DL/runs/bm25.$year.retrieve_results.json" \
        --budgets "$budgets" --threads "$threads" --out "$d" > "$d.log" 2>&1 || {
        echo "rerank_budget_sweep: rerank-eval failed, see $d.log" >&2; exit 1; }
    done
  done
fi

args=(--out "$out" --budgets "$budgets")
for i in "${!names[@]}"; do args+=(--reranker "${names[$i]}"); done
[ "$trec" = 1 ] && args+=(--trec)
"$PYTHON" "$here/rerank_budget_plot.py" "${args[@]}"
echo "wrote $out/table.md, $out/table.tsv, $out/em_vs_budget.svg" >&2
