#!/usr/bin/env bash
# Open-domain QA benchmark of issue 5 (docs/BENCHMARKS.md, docs/RESULTS.md):
#
#   corpus    = the validation articles' paragraphs (SQuAD v1.1 dev, the titles
#               in data/splits/squad_valid_titles.txt) + the 55,597 Wikipedia
#               passages of enwiki-2019-good-articles-sample as distractors
#   questions = the validation articles' questions (open-domain SQuAD-small),
#               NQ-open dev (3,610) and DensePhrases' 1,000-question NQ sample.
#               The Wikipedia sample is not aligned with NQ: expect low NQ
#               numbers (few answers are in the corpus at all).
#
# For each index factory (the compact one, and Flat for the uncompressed
# exhaustive baseline) it builds a dump, then runs `phrex eval` with
# --threads 2 (batch throughput) and --threads 1 (single-query latency) under
# /usr/bin/time -v (peak RSS of the serving process), and writes a markdown
# table of EM, F1, recall@1/5/20/100, latency p50/p95/p99, q/s and peak RSS.
#
# Run it on an idle machine: latency with 2 threads explodes when another
# process holds a core. Derived data goes under --work (default
# out/odqa-bench/), never into the repository.
#
#   bench/odqa_bench.sh --model models/phrase --factory IVF2048,SQ8 --flat
#   bench/odqa_bench.sh --distractors 2000 --limit 200 --work out/odqa-small   # a quick check
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
shared=${PHREX_SHARED_DIR:-$here/../shared}
phrex=${PHREX_BIN:-$here/build/phrex}
model=${PHREX_MODEL:-$here/models/base/all-MiniLM-L6-v2}
work=$here/out/odqa-bench
factories=()
flat=0
distractors=0 # 0: all 55,597
limit=0       # 0: every question
nprobe=""
sets="squad-valid,nq-open-dev,nq-1000"
rebuild=0
py=/usr/bin/python3 # Debian's, stdlib only

usage() {
    cat <<EOF
usage: bench/odqa_bench.sh [options]
  --model DIR         phrex model (default $model)
  --factory F         FAISS factory of the compact index; repeatable (default auto)
  --flat              also build and evaluate the exhaustive Flat baseline
  --distractors N     first N Wikipedia passages only (default all 55,597)
  --limit N           first N questions of each set (default all)
  --nprobe N          inverted lists visited (default: phrex's, 256)
  --sets LIST         comma-separated of squad-valid, nq-open-dev, nq-1000 (default all)
  --work DIR          where corpus, dumps, runs and the table go (default out/odqa-bench)
  --phrex BIN         the phrex binary (default build/phrex)
  --rebuild           rebuild dumps that exist
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --model) model=$2; shift 2 ;;
    --factory) factories+=("$2"); shift 2 ;;
    --flat) flat=1; shift ;;
    --distractors) distractors=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --nprobe) nprobe=$2; shift 2 ;;
    --sets) sets=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --phrex) phrex=$2; shift 2 ;;
    --rebuild) rebuild=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "odqa_bench: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
[ ${#factories[@]} -gt 0 ] || factories=(auto)
[ "$flat" = 1 ] && factories+=(Flat)

squad_json=$shared/data/squad-v1.1/dev-v1.1.40-articles.json
valid_titles=$here/data/splits/squad_valid_titles.txt
wiki_tsv=$shared/data/wikipedia/enwiki-2019-good-articles-sample/psgs_w100.tsv
for f in "$phrex" "$squad_json" "$valid_titles" "$wiki_tsv"; do
    [ -e "$f" ] || { echo "odqa_bench: $f does not exist" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "odqa_bench: /usr/bin/time is needed for peak RSS (apt-get install time)" >&2; exit 1; }
mkdir -p "$work"

# --- derived inputs (under $work only) ---------------------------------------------
corpus=$work/corpus-d$distractors.tsv
if [ ! -s "$corpus" ]; then
    echo "odqa_bench: writing $corpus" >&2
    "$py" - "$squad_json" "$valid_titles" "$wiki_tsv" "$distractors" "$corpus" "$work/squad-valid.jsonl" <<'EOF'
import csv, json, sys
squad, titles_path, wiki, n_distract, out_tsv, out_qa = sys.argv[1:]
n_distract = int(n_distract)
titles = [t for t in open(titles_path, encoding="utf-8").read().split("\n") if t]
arts = {a["title"]: a for a in json.load(open(squad, encoding="utf-8"))["data"]}
missing = [t for t in titles if t not in arts]
if missing:
    sys.exit("odqa_bench: titles not in %s: %s" % (squad, missing))
csv.field_size_limit(1 << 30)
def q(s):  # DPR TSV quoting: the field in double quotes, inner quotes doubled
    return '"' + s.replace('"', '""') + '"'
n_par = n_q = n_w = 0
with open(out_tsv, "w", encoding="utf-8", newline="") as out, open(out_qa, "w", encoding="utf-8") as qa:
    out.write("id\ttext\ttitle\n")
    for t in titles:
        for p in arts[t]["paragraphs"]:
            n_par += 1
            out.write("squad-%d\t%s\t%s\n" % (n_par, q(p["context"].replace("\n", " ")), q(t)))
            for x in p["qas"]:
                ans = [a["text"] for a in x["answers"]]
                qa.write(json.dumps({"question": x["question"], "answer": ans}, ensure_ascii=False) + "\n")
                n_q += 1
    with open(wiki, encoding="utf-8", newline="") as f:
        r = csv.reader(f, delimiter="\t", quotechar='"')
        next(r)
        for row in r:
            if n_distract and n_w >= n_distract:
                break
            n_w += 1
            out.write("wiki-%s\t%s\t%s\n" % (row[0], q(row[1].replace("\n", " ")), q(row[2])))
print("odqa_bench: %d validation paragraphs (%d questions) + %d Wikipedia passages" % (n_par, n_q, n_w),
      file=sys.stderr)
EOF
fi

qa_file() {
    case "$1" in
    squad-valid) echo "$work/squad-valid.jsonl" ;;
    nq-open-dev) echo "$shared/data/nq-open/NQ-open.dev.jsonl" ;;
    nq-1000) echo "$shared/data/wikipedia/densephrases-sample/nq_1000_dev_orqa.jsonl" ;;
    *) echo "odqa_bench: unknown question set '$1'" >&2; exit 2 ;;
    esac
}

# --- build and evaluate ----------------------------------------------------------------
runs=$work/runs.tsv
: >"$runs"
IFS=, read -r -a set_list <<<"$sets"
for factory in "${factories[@]}"; do
    tag=$(echo "$factory" | tr -c 'A-Za-z0-9_\n' '_')
    dump=$work/dump-d$distractors-$tag
    if [ "$rebuild" = 1 ]; then rm -rf "$dump"; fi
    if [ ! -f "$dump/manifest.json" ]; then
        echo "odqa_bench: building $dump ($factory)" >&2
        /usr/bin/time -v -o "$work/build-$tag.time" \
            "$phrex" build --corpus "$corpus" --out "$dump" --model "$model" --index-factory "$factory" --threads 2 \
            --quiet 2>&1 | tee "$work/build-$tag.log" >&2
    fi
    for set in "${set_list[@]}"; do
        qa=$(qa_file "$set")
        [ -e "$qa" ] || { echo "odqa_bench: $qa does not exist" >&2; exit 1; }
        for threads in 2 1; do
            out=$work/run-$tag-$set-t$threads
            args=(eval --dump "$dump" --qa "$qa" --model "$model" --threads "$threads" --out "$out")
            [ "$limit" != 0 ] && args+=(--limit "$limit")
            [ -n "$nprobe" ] && [ "$factory" != Flat ] && args+=(--nprobe "$nprobe")
            echo "odqa_bench: $factory / $set / $threads thread(s)" >&2
            /usr/bin/time -v -o "$out.time" "$phrex" "${args[@]}" >"$out.log" 2>&1 ||
                { echo "odqa_bench: phrex eval failed, see $out.log" >&2; exit 1; }
            printf '%s\t%s\t%s\t%s\t%s\n' "$factory" "$set" "$threads" "$out/summary.json" "$out.time" >>"$runs"
        done
    done
done

# --- the table -------------------------------------------------------------------------
table=$work/results.md
"$py" - "$runs" "$work" "$distractors" "$model" >"$table" <<'EOF'
import glob, json, os, re, sys
runs, work, distract, model = sys.argv[1:]
def rss_mb(path):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(path).read())
    return int(m.group(1)) / 1024.0 if m else float("nan")
def dump_size(factory):
    tag = re.sub(r"[^A-Za-z0-9_]", "_", factory)
    d = glob.glob(os.path.join(work, "dump-d%s-%s" % (distract, tag)))
    if not d:
        return ""
    man = json.load(open(os.path.join(d[0], "manifest.json")))
    b = sum(os.path.getsize(os.path.join(d[0], f)) for f in ("index.faiss", "meta.mdb"))
    return "%.0f MB (%.0f B/token)" % (b / 2**20, b / max(1, man["counts"]["tokens"]))
print("Corpus: validation-article paragraphs + %s Wikipedia passages; model %s.\n" %
      ("55,597" if distract == "0" else distract, model))
print("| index | dump | questions | threads | n | EM | F1 | R@1 | R@5 | R@20 | R@100 | p50 ms | p95 ms | p99 ms | q/s | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for line in open(runs):
    factory, qset, threads, summary, timef = line.rstrip("\n").split("\t")
    s = json.load(open(summary))
    print("| %s | %s | %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f |" % (
        s.get("factory", factory), dump_size(factory), qset, threads, s["n"], s["em"], s["f1"], s["recall_at_1"],
        s["recall_at_5"], s["recall_at_20"], s["recall_at_100"], s["latency_ms_p50"], s["latency_ms_p95"],
        s["latency_ms_p99"], s["qps"], rss_mb(timef)))
EOF
cat "$table"
echo "odqa_bench: table in $table" >&2
