#!/usr/bin/env python3
"""PyTorch + transformers side of the encoder benchmark (bench/encoder.sh).

Runs all-MiniLM-L6-v2 with transformers' BertModel on the CPU, at a fixed
thread count, over the same inputs phrex's bench_encoder uses, and prints one
JSON object per measurement:
  fixed:    32 sequences x 128 tokens (the first real passages that long, cut), tokens/s
  passages: real variable-length passages from a DPR TSV in batches of 32,
            padded to the batch's longest (what a transformers user does);
            tokens/s counts real (non-pad) tokens only
  query:    single 16-token query latency, ms
Medians over --repeats runs, after one warm-up.
"""
import argparse, csv, json, statistics, sys, time

import torch
from transformers import BertModel, BertTokenizerFast


def read_passages(path, n):
    csv.field_size_limit(1 << 30)
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t")
        next(rows)  # header id, text, title
        for row in rows:
            out.append(row[1])
            if len(out) == n:
                break
    return out


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/base/all-MiniLM-L6-v2")
    ap.add_argument("--passages", default="../shared/data/wikipedia/enwiki-2019-good-articles-sample/psgs_w100.tsv")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-passages", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    tok = BertTokenizerFast.from_pretrained(args.model)
    model = BertModel.from_pretrained(args.model).eval()
    texts = read_passages(args.passages, args.n_passages)
    common = {"impl": "torch", "torch": torch.__version__, "threads": args.threads}

    # The first 32 passages of at least 128 tokens, cut to 128: no padding.
    long_texts = [t for t in texts if len(tok(t)["input_ids"]) >= 128][:32]
    fixed = tok(long_texts, truncation=True, max_length=128, padding="max_length", return_tensors="pt")
    t = median_time(lambda: model(**fixed), args.repeats)
    print(json.dumps({**common, "case": "fixed", "tokens": 32 * 128, "seconds": t, "tokens_per_s": 32 * 128 / t}))

    batches = [tok(texts[i:i + 32], truncation=True, max_length=512, padding=True, return_tensors="pt")
               for i in range(0, len(texts), 32)]
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    t = median_time(lambda: [model(**b) for b in batches], max(1, args.repeats // 2))
    print(json.dumps({**common, "case": "passages", "tokens": real, "seconds": t, "tokens_per_s": real / t}))

    query = {"input_ids": torch.tensor([[101] + [2000 + i for i in range(14)] + [102]]),
             "attention_mask": torch.ones(1, 16, dtype=torch.long)}
    t = median_time(lambda: model(**query), 50 * args.repeats)
    print(json.dumps({**common, "case": "query", "tokens": 16, "seconds": t, "latency_ms": 1e3 * t}))


if __name__ == "__main__":
    sys.exit(main())
