#!/usr/bin/env bash
# Build benchmark (issue 4): `phrex build` over the 55,597 Wikipedia passages
# of ../shared/data/wikipedia/enwiki-2019-good-articles-sample plus the
# 1,682 SQuAD dev paragraphs, on an idle machine.
#
# Reports, as a markdown table in $OUT/build_bench.md:
#   - build throughput (corpus tokens/s of the encode stage) and its share of
#     the encoder's standalone throughput on the same passages at the same
#     thread count (bench_embed, "passages" case);
#   - peak RSS of the build (/usr/bin/time -v), and of a build of half the
#     corpus: streaming means the two are about equal;
#   - dump bytes per corpus token (index.faiss + meta.mdb, text included,
#     over every corpus token, kept or filtered) for each FAISS factory.
# Encoding runs once (--keep-vectors) into a dump whose own index is PQ1np
# (one byte per vector: its peak RSS is the encode stage's, not an index's);
# every factory, Flat included, is then indexed from those vectors by
# `phrex reindex`, without encoding again, each with its own peak RSS (the
# FAISS index is built in memory: that part grows with the kept tokens).
#
# usage: bench/build_bench.sh [options]
#   BUILD=build        the build folder holding phrex and bench_embed
#   OUT=out/build-bench  scratch and report folder (dumps are large: ~3 GB per
#                      million kept tokens for the Flat dump and its vectors)
#   SLICE=0            use only the first SLICE Wikipedia passages and as large a
#                      share of the SQuAD paragraphs (0: all)
#   THREADS=2          threads for encoding and indexing
#   MODEL=             --model (default: phrex's default model)
#   FILTER= THRESHOLD= phrase filter file and threshold (default: none)
#   FACTORIES="..."    factories to index with ("auto" sizes IVF lists from the
#                      kept count: nlist = power of two nearest 4*sqrt(kept))
#   RSS_HALF=1         also build half the corpus to compare peak RSS
#
# Small-slice check (numbers are not the benchmark):
#   SLICE=2000 OUT=out/bench-small bench/build_bench.sh
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-out/build-bench}
SLICE=${SLICE:-0}
THREADS=${THREADS:-2}
MODEL=${MODEL:-}
FILTER=${FILTER:-}
THRESHOLD=${THRESHOLD:-}
RSS_HALF=${RSS_HALF:-1}
SHARED=${PHREX_SHARED_DIR:-../shared}
WIKI=$SHARED/data/wikipedia/enwiki-2019-good-articles-sample/psgs_w100.tsv
SQUAD=$SHARED/data/wikipedia/squad-dev-paragraphs/squad-dev-v1.1-paragraphs.tsv
PHREX=$BUILD/phrex
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

for f in "$PHREX" "$BUILD/bench_embed" /usr/bin/time "$WIKI" "$SQUAD"; do
    [ -e "$f" ] || { echo "build_bench: $f is missing (build with cmake; apt-get install time)" >&2; exit 1; }
done
mkdir -p "$OUT"

# The corpus: all of Wikipedia (or its first SLICE passages) then SQuAD.
corpus=("$WIKI" "$SQUAD")
if [ "$SLICE" -gt 0 ]; then # and a proportional share of the SQuAD paragraphs (1,682 of 55,597)
    head -n $((SLICE + 1)) "$WIKI" > "$OUT/wiki-slice.tsv"
    head -n $((SLICE * 1682 / 55597 + 2)) "$SQUAD" > "$OUT/squad-slice.tsv"
    corpus=("$OUT/wiki-slice.tsv" "$OUT/squad-slice.tsv")
fi
model_args=()
[ -n "$MODEL" ] && model_args=(--model "$MODEL")
filter_args=()
[ -n "$FILTER" ] && filter_args=(--filter "$FILTER")
[ -n "$THRESHOLD" ] && filter_args+=(--filter-threshold "$THRESHOLD")

# peak_rss_kb LOG: "Maximum resident set size (kbytes)" from time -v.
peak_rss_kb() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
# field MANIFEST NAME: an integer field of the manifest's counts.
field() { grep -o "\"$2\": [0-9]*" "$1" | head -n 1 | grep -o '[0-9]*$'; }
bytes() { stat -c %s "$1"; }

echo "== encoder standalone (bench_embed, $THREADS threads)" >&2
"$BUILD/bench_embed" --threads "$THREADS" --passages "${corpus[0]}" --n-passages "$([ "$SLICE" -gt 0 ] && echo 256 || echo 1024)" --repeats 3 \
    ${MODEL:+--model "$MODEL"} > "$OUT/encoder.jsonl"
enc_tps=$(grep '"case":"passages"' "$OUT/encoder.jsonl" | grep -o '"tokens_per_s":[0-9.]*' | cut -d: -f2)

build_once() { # DIR LOG CORPUS...
    local dir=$1 log=$2
    shift 2
    rm -rf "$dir"
    /usr/bin/time -v "$PHREX" build --corpus "$@" --out "$dir" --index-factory PQ1np --keep-vectors \
        --threads "$THREADS" --quiet "${model_args[@]}" "${filter_args[@]}" > "$log.out" 2> "$log"
}

echo "== build (vectors kept, PQ1np index)" >&2
build_once "$OUT/enc" "$OUT/build.log" "${corpus[@]}"
summary=$(cat "$OUT/build.log.out")
build_tps=$(sed -n 's/.*(\([0-9]*\) tokens\/s).*/\1/p' <<< "$summary")
rss_kb=$(peak_rss_kb "$OUT/build.log")
# Reindex with the model the dump was built with (the default may change).
model_args=(--model "$(sed -n 's/.*"model": {[^}]*"dir": "\([^"]*\)".*/\1/p' "$OUT/enc/manifest.json")")
tokens=$(field "$OUT/enc/manifest.json" tokens)
kept=$(field "$OUT/enc/manifest.json" kept)
passages=$(field "$OUT/enc/manifest.json" passages)

half_line=""
if [ "$RSS_HALF" = 1 ]; then
    echo "== build of half the corpus (peak RSS check)" >&2
    n=$(( ($(wc -l < "${corpus[0]}") - 1) / 2 ))
    head -n $((n + 1)) "${corpus[0]}" > "$OUT/half.tsv"
    build_once "$OUT/half" "$OUT/half.log" "$OUT/half.tsv"
    half_tokens=$(field "$OUT/half/manifest.json" tokens)
    half_line="| build peak RSS (PQ1np index), first half of the Wikipedia part ($half_tokens tokens) | $(( $(peak_rss_kb "$OUT/half.log") / 1024 )) MiB |"
    rm -rf "$OUT/half"
fi

# IVF lists for the kept count, as phrex's "auto" picks them.
nlist=256
target=$(awk -v k="$kept" 'BEGIN { printf "%d", 4 * sqrt(k) }')
while [ $nlist -lt 65536 ] && [ $(( (nlist * 2 - target) * (nlist * 2 - target) )) -lt $(( (nlist - target) * (nlist - target) )) ]; do
    nlist=$((nlist * 2))
done
FACTORIES=${FACTORIES:-"Flat IVF${nlist},SQ8 IVF${nlist},SQ4 OPQ32,IVF${nlist},PQ32np OPQ16,IVF${nlist},PQ16np"}

{
    echo "# phrex build benchmark"
    echo
    echo "Corpus: ${corpus[*]} ($passages passages, $tokens WordPiece tokens, $kept kept$([ -n "$FILTER" ] && echo ", filter $FILTER @ ${THRESHOLD:--2}"))."
    echo "Threads: $THREADS. $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs."
    [ "$SLICE" -gt 0 ] && echo && echo "**Small slice ($SLICE Wikipedia passages): not the benchmark; timings on a busy machine mean nothing.**"
    echo
    echo "| measure | value |"
    echo "|---|---:|"
    echo "| encoder standalone (bench_embed passages) | $enc_tps tokens/s |"
    echo "| build encode stage | $build_tps tokens/s |"
    echo "| share of standalone | $(awk -v a="$build_tps" -v b="$enc_tps" 'BEGIN { printf "%.0f%%", 100 * a / b }') |"
    echo "| build peak RSS (PQ1np index), whole corpus ($tokens tokens) | $((rss_kb / 1024)) MiB |"
    [ -n "$half_line" ] && echo "$half_line"
    echo
    echo "| factory | index MB | LMDB MB | bytes / corpus token | index s | reindex peak RSS MiB |"
    echo "|---|---:|---:|---:|---:|---:|"
} > "$OUT/build_bench.md"

for f in $FACTORIES; do
    echo "== index $f" >&2
    dir=$OUT/idx-$(tr ',' '_' <<< "$f")
    rm -rf "$dir"
    /usr/bin/time -v "$PHREX" reindex --dump "$OUT/enc" --out "$dir" --index-factory "$f" --threads "$THREADS" \
        --quiet "${model_args[@]}" > "$dir.out" 2> "$dir.log"
    secs=$(sed -n 's/.*index \([0-9.]*\) s.*/\1/p' "$dir.out")
    ib=$(bytes "$dir/index.faiss")
    lb=$(bytes "$dir/meta.mdb")
    awk -v f="$f" -v i="$ib" -v l="$lb" -v t="$tokens" -v s="$secs" -v r="$(peak_rss_kb "$dir.log")" \
        'BEGIN { printf "| %s | %.1f | %.1f | %.2f | %s | %d |\n", f, i / 1e6, l / 1e6, (i + l) / t, s, r / 1024 }' \
        >> "$OUT/build_bench.md"
    rm -rf "$dir"
done
cat "$OUT/build_bench.md"
