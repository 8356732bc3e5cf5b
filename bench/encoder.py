#!/usr/bin/env python3
"""Encoder benchmark, phrex vs PyTorch + transformers, side by side in one run.

    bench/encoder.py [--threads 1 2] [--repeats 5]    (after scripts/setup and scripts/refenv)

Runs build/bench_embed and bench/bench_torch.py (in .venv) on the same model,
the same passages and the same thread counts, one after the other, and prints
a Markdown table of medians and ratios for docs/BENCHMARKS.md.
"""
import argparse, json, os, platform, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd):
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return {r["case"]: r for r in (json.loads(l) for l in out.splitlines() if l.startswith("{"))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-passages", type=int, default=256)
    args = ap.parse_args()
    env_python = os.path.join(ROOT, ".venv", "bin", "python")
    rows = []
    for t in args.threads:
        common = ["--threads", str(t), "--repeats", str(args.repeats), "--n-passages", str(args.n_passages)]
        phrex = run([os.path.join(ROOT, "build", "bench_embed")] + common)
        torch = run([env_python, os.path.join(ROOT, "bench", "bench_torch.py")] + common)
        rows.append((t, phrex, torch))

    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {rows[0][2]['fixed']['torch']}\n")
    print("| threads | case | phrex | PyTorch | phrex / PyTorch | phrex share of sgemm peak |")
    print("|---|---|---|---|---|---|")
    for t, p, q in rows:
        peak = p["sgemm"]["gflops"]
        for case in ("fixed", "passages"):
            print(f"| {t} | {case} tokens/s | {p[case]['tokens_per_s']:.0f} | {q[case]['tokens_per_s']:.0f} | "
                  f"{p[case]['tokens_per_s'] / q[case]['tokens_per_s']:.2f}x | "
                  f"{100 * p[case]['peak_fraction']:.0f}% of {peak:.0f} GFLOPS |")
        print(f"| {t} | 16-token query latency | {p['query']['latency_ms']:.2f} ms | {q['query']['latency_ms']:.2f} ms | "
              f"{q['query']['latency_ms'] / p['query']['latency_ms']:.2f}x lower | |")


if __name__ == "__main__":
    sys.exit(main())
