#!/usr/bin/env python3
"""Table and SVG plot for bench/rerank_budget_sweep.sh (standard library only).

Reads OUT/none/summary.json and OUT/<name>-<budget>/summary.json (phrex eval),
and with --trec OUT/trec-<name>-<dl19|dl20>/summary.json (phrex rerank-eval);
writes OUT/table.md, OUT/table.tsv and OUT/em_vs_budget.svg.
"""
import argparse
import json
import math
import os
import sys

COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"rerank_budget_plot: {path}: {e}")


def fmt_budget(b):
    return f"{b:g}"


def svg_plot(path, budgets, series, baseline, title):
    """EM (y) against budget (x, log scale); one polyline per reranker."""
    w, h, left, right, top, bottom = 640, 400, 60, 150, 40, 50
    pw, ph = w - left - right, h - top - bottom
    ys = [v for _, pts in series for v in pts if v is not None] + [baseline]
    lo, hi = math.floor(min(ys) - 1), math.ceil(max(ys) + 1)
    if hi <= lo:
        hi = lo + 1
    lx0, lx1 = math.log(min(budgets)), math.log(max(budgets))
    span = lx1 - lx0 if lx1 > lx0 else 1.0

    def x(b):
        return left + (math.log(b) - lx0) / span * pw if lx1 > lx0 else left + pw / 2

    def y(v):
        return top + (hi - v) / (hi - lo) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left + pw / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>']
    for b in budgets:
        out.append(f'<line x1="{x(b):.1f}" y1="{top + ph}" x2="{x(b):.1f}" y2="{top + ph + 5}" stroke="black"/>')
        out.append(f'<text x="{x(b):.1f}" y="{top + ph + 18}" text-anchor="middle">{fmt_budget(b)}</text>')
    ticks = 5
    for i in range(ticks + 1):
        v = lo + (hi - lo) * i / ticks
        out.append(f'<line x1="{left - 5}" y1="{y(v):.1f}" x2="{left}" y2="{y(v):.1f}" stroke="black"/>')
        out.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 10}" text-anchor="middle">budget (ms, p95 of encode + search + rerank)</text>')
    out.append(f'<text x="15" y="{top + ph / 2}" transform="rotate(-90 15 {top + ph / 2})" text-anchor="middle">EM (%)</text>')
    out.append(f'<line x1="{left}" y1="{y(baseline):.1f}" x2="{left + pw}" y2="{y(baseline):.1f}" stroke="gray" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{left + pw + 8}" y="{y(baseline) + 4:.1f}" fill="gray">no rerank</text>')
    for i, (name, pts) in enumerate(series):
        c = COLOURS[i % len(COLOURS)]
        xy = [(x(b), y(v)) for b, v in zip(budgets, pts) if v is not None]
        if len(xy) > 1:
            out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                       + " ".join(f"{a:.1f},{b:.1f}" for a, b in xy) + '"/>')
        for a, b in xy:
            out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{c}"/>')
        ly = top + 14 + 18 * i
        out.append(f'<line x1="{left + pw + 8}" y1="{ly}" x2="{left + pw + 28}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 32}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--budgets", required=True)
    ap.add_argument("--reranker", action="append", default=[])
    ap.add_argument("--trec", action="store_true")
    a = ap.parse_args()
    budgets = [float(b) for b in a.budgets.split(",")]
    none = load(os.path.join(a.out, "none", "summary.json"))
    base_em = none["em"]
    md = [f"EM on {none['n']} questions ({none['qa']}), {none['threads']} thread(s); "
          f"no reranking: EM {base_em:.2f}, p95 {none['latency_ms_p95']:.1f} ms.", "",
          "| reranker | " + " | ".join(f"{fmt_budget(b)} ms" for b in budgets) + " |",
          "|---|" + "---|" * len(budgets)]
    tsv = ["reranker\tbudget_ms\tk\tem\tf1\tp95_ms\trerank_ms_mean"]
    series = []
    for name in a.reranker:
        cells, pts = [], []
        for b in budgets:
            s = load(os.path.join(a.out, f"{name}-{fmt_budget(b)}", "summary.json"))
            cells.append(f"{s['em']:.2f} (k {s['rerank_k']}, p95 {s['latency_ms_p95']:.1f})")
            pts.append(s["em"])
            tsv.append(f"{name}\t{b:g}\t{s['rerank_k']}\t{s['em']:.4f}\t{s['f1']:.4f}\t{s['latency_ms_p95']:.4f}\t"
                       f"{s.get('rerank_ms_mean', 0):.4f}")
        md.append(f"| {name} | " + " | ".join(cells) + " |")
        series.append((name, pts))
    if a.trec:
        md += ["", "TREC DL nDCG@10 (linear gains), BM25 top-k reranked, k per budget by mean latency:", "",
               "| reranker | set | BM25 | " + " | ".join(f"{fmt_budget(b)} ms" for b in budgets) + " |",
               "|---|---|---|" + "---|" * len(budgets)]
        for name in a.reranker:
            for year in ("dl19", "dl20"):
                s = load(os.path.join(a.out, f"trec-{name}-{year}", "summary.json"))
                by = {float(x["budget_ms"]): x for x in s.get("budgets", [])}
                cells = [f"{by[b]['ndcg_at_10']:.4f} (k {by[b]['k']})" if b in by else "-" for b in budgets]
                md.append(f"| {name} | {year} | {s['first_stage_ndcg_at_10']:.4f} | " + " | ".join(cells) + " |")
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(a.out, "table.tsv"), "w") as f:
        f.write("\n".join(tsv) + "\n")
    svg_plot(os.path.join(a.out, "em_vs_budget.svg"), budgets, series, base_em, "EM against latency budget")


if __name__ == "__main__":
    main()
