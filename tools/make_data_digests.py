#!/usr/bin/env python3
"""Recompute the hard-coded data digests, counts and other expected values of
tests/test_data_corpus.c and tests/test_data_qa.c (and the real-data counts
of tests/test_data_metrics.c: test_squad_metrics, and the sentence / record
counts of test_curatedtrec_patterns -- its regex counts fail_raw, fail_nfd,
searched and matched are NOT recomputed here) from the real files under the
shared data directory, independently of the C readers.

Only the Python standard library is used (csv, json, ast, re, unicodedata,
plus argparse, os and sys for plumbing): passages and questions are read with Python's own
csv / json / ast parsers, then mixed exactly as the C tests mix them.

Hash: FNV-1a 64 over UTF-8 bytes (h ^= byte; h *= 1099511628211 mod 2**64),
started from the offset constant the tests define,

    FNV_OFFSET = 1469598103934665603

NOTE: this is NOT the standard FNV-1a 64 offset basis 14695981039346656037
(the tests' constant lacks the final digit). The tests use it as written, so
this script keeps it; changing it would change every digest.

Digests (one running hash over a whole file or directory):
  * corpus passages: id 0x1f title 0x1f text 0x1e, per passage;
    DPR TSV ids come from the file, WikiExtractor paragraphs get "DOCID:N"
    (N counts the non-blank paragraph lines after the title line, from 0),
    SQuAD-style JSON paragraphs get "TITLE:N" (N = paragraph index).
  * QA records: question, then per answer 0x1f + text and, for SQuAD answers,
    "@start_char/start_byte" (code points / UTF-8 bytes before the answer);
    then 0x1e.
  * metrics: the official SQuAD v1.1 normalize_answer / EM / F1, and DPR's
    SimpleTokenizer ((\\p{L}|\\p{N}|\\p{M})+ | [^\\p{Z}\\p{C}], via
    unicodedata categories) + has_answer over NFD text.

Usage:  python3 tools/make_data_digests.py [--shared DIR] [--check]
  --shared DIR  the shared folder holding data/ (default: ../shared relative
                to the repository root)
  --check       compare every value with the constant in the C test file
                (listed in EXPECTED below, and each one also looked up in
                the .c text) and exit 1 on any difference.
"""

import argparse
import ast
import csv
import json
import os
import re
import sys
import unicodedata

FNV_OFFSET = 1469598103934665603  # as in the tests; NOT the standard 14695981039346656037
FNV_PRIME = 1099511628211
MASK = (1 << 64) - 1

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mix(h, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


def fnv(s):
    return mix(FNV_OFFSET, s)


def blen(s):
    return len(s.encode("utf-8"))


def mix_passage(h, pid, title, text):
    h = mix(h, pid)
    h = mix(h, b"\x1f")
    h = mix(h, title)
    h = mix(h, b"\x1f")
    h = mix(h, text)
    return mix(h, b"\x1e")


def mix_record(h, question, answers):
    """answers: list of (text, start_char or None, start_byte or None)."""
    h = mix(h, question)
    for text, sc, sb in answers:
        h = mix(h, b"\x1f")
        h = mix(h, text)
        if sc is not None:
            h = mix(h, "@%d/%d" % (sc, sb))
    return mix(h, b"\x1e")


csv.field_size_limit(1 << 30)


# --- readers -----------------------------------------------------------------


def read_tsv_rows(path):
    """Yields (start_line, row) with Python's csv module (TAB, '"' quotes)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quotechar='"')
        prev = 0
        for row in reader:
            start = prev + 1
            prev = reader.line_num
            if not row:
                continue
            yield start, row


def dpr_tsv_passages(path):
    """Yields (line, id, title, text); header names the column order."""
    it = read_tsv_rows(path)
    first = next(it)
    _, row = first
    if [c.strip().lower() for c in row] and set(c.strip().lower() for c in row) == {"id", "text", "title"}:
        cols = [c.strip().lower() for c in row]
        rows = it
    else:
        cols = ["id", "text", "title"]
        rows = _chain([first], it)
    for line, row in rows:
        rec = dict(zip(cols, row))
        yield line, rec["id"], rec["title"], rec["text"]


def _chain(a, b):
    for x in a:
        yield x
    for x in b:
        yield x


_ENTITY = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|amp|quot|lt|gt|apos);")


def unescape(s):
    def sub(m):
        e = m.group(1)
        if e.startswith("#x") or e.startswith("#X"):
            return chr(int(e[2:], 16))
        if e.startswith("#"):
            return chr(int(e[1:]))
        return {"amp": "&", "quot": '"', "lt": "<", "gt": ">", "apos": "'"}[e]

    return _ENTITY.sub(sub, s)


_DOC = re.compile(r'^<doc ([^>]*)>\s*$')
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def wikiextractor_dir(root):
    """Yields ('doc', id) per document and (line, path, id, title, text) per
    paragraph, over root/*/wiki_* in sorted order."""
    files = []
    for sub in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        d = os.path.join(root, sub)
        if os.path.isdir(d):
            files += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.startswith("wiki_")]
        elif sub.startswith("wiki_"):
            files.append(d)
    for path in files:
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        doc = None
        for no, raw in enumerate(lines, 1):
            line = raw[:-1] if raw.endswith("\r") else raw
            m = _DOC.match(line)
            if m:
                attrs = dict(_ATTR.findall(m.group(1)))
                doc = {"id": unescape(attrs["id"]), "title": unescape(attrs["title"]), "first": True, "n": 0}
                continue
            if line == "</doc>":
                yield ("doc", doc["id"])
                doc = None
                continue
            assert doc is not None, "%s:%d: text outside <doc>" % (path, no)
            if doc["first"]:
                doc["first"] = False
                # the title line repeats the header title, entities escaped
                # the same way ("Sonic &amp; Knuckles"): compare unescaped
                if unescape(line).strip() == doc["title"].strip():
                    continue
            if not line.strip():
                continue
            yield (no, path, "%s:%d" % (doc["id"], doc["n"]), doc["title"], line)
            doc["n"] += 1


def squad_articles(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)["data"]


def first_object_column(path, key):
    """1-based byte column of the first '{' after the first '"key": [' in a
    one-line JSON file (where the C reader reports the record)."""
    with open(path, "rb") as f:
        raw = f.read()
    m = re.search(rb'"' + key.encode() + rb'"\s*:\s*\[\s*\{', raw)
    brace = m.end() - 1
    line_start = raw.rfind(b"\n", 0, brace) + 1
    return brace - line_start + 1


def dpr_csv_records(path):
    """DPR question lists: question TAB python-list-literal [TAB id]."""
    for line, row in read_tsv_rows(path):
        answers = ast.literal_eval(row[1])
        yield line, row[0], list(answers)


def jsonl_records(path):
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            o = json.loads(line)
            ans = o.get("answer", o.get("answers"))
            yield no, o["question"], ans


# --- metrics (official SQuAD v1.1 evaluate.py; DPR SimpleTokenizer + has_answer)

PUNCT = set("""!"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~""")  # string.punctuation


def squad_normalize(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def squad_em(pred, gold):
    return int(squad_normalize(pred) == squad_normalize(gold))


def squad_f1(pred, gold):
    p, g = squad_normalize(pred).split(), squad_normalize(gold).split()
    counts = {}
    for w in g:
        counts[w] = counts.get(w, 0) + 1
    same = 0
    for w in p:
        if counts.get(w, 0) > 0:
            counts[w] -= 1
            same += 1
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(g)
    return 2 * prec * rec / (prec + rec)


def dpr_tokens(text):
    """DPR SimpleTokenizer, (\\p{L}|\\p{N}|\\p{M})+ | [^\\p{Z}\\p{C}], lowered."""
    out, run = [], []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] in "LNM":
            run.append(ch)
            continue
        if run:
            out.append("".join(run).lower())
            run = []
        if cat[0] not in "ZC":
            out.append(ch.lower())
    if run:
        out.append("".join(run).lower())
    return out


def has_answer(text, answers):
    toks = dpr_tokens(unicodedata.normalize("NFD", text))
    for a in answers:
        at = dpr_tokens(unicodedata.normalize("NFD", a))
        for i in range(0, len(toks) - len(at) + 1):
            if toks[i:i + len(at)] == at:
                return True
    return False


# --- computations ----------------------------------------------------------------


def compute(shared):
    data = os.path.join(shared, "data")
    P = lambda *a: os.path.join(data, *a)
    out = []  # (file, test, name, value)

    def put(file, test, name, value):
        out.append((file, test, name, value))

    C = "tests/test_data_corpus.c"
    Q = "tests/test_data_qa.c"

    # test_psgs_w100
    t = "test_psgs_w100"
    h, n, lines_ok = FNV_OFFSET, 0, True
    first_quoted_title = None
    for line, pid, title, text in dpr_tsv_passages(P("wikipedia", "enwiki-2019-good-articles-sample", "psgs_w100.tsv")):
        n += 1
        h = mix_passage(h, pid, title, text)
        lines_ok &= line == n + 1
        if n == 1:
            put(C, t, "first id", pid)
            put(C, t, "first text_len", blen(text))
            put(C, t, "first fnv(text)", fnv(text))
            put(C, t, "first fnv(title)", fnv(title))
            put(C, t, "first text quotes", text.count('"'))
        if line == 20866:
            put(C, t, "line 20866 id", pid)
            put(C, t, "line 20866 title_len", blen(title))
            put(C, t, "line 20866 fnv(title)", fnv(title))
        last = (pid, text, title)
    put(C, t, "every line == n+1", lines_ok)
    put(C, t, "last id", last[0])
    put(C, t, "last text_len", blen(last[1]))
    put(C, t, "last fnv(text)", fnv(last[1]))
    put(C, t, "last fnv(title)", fnv(last[2]))
    put(C, t, "count", n)
    put(C, t, "digest", h)
    # the first title that is quoted in the file
    with open(P("wikipedia", "enwiki-2019-good-articles-sample", "psgs_w100.tsv"), encoding="utf-8") as f:
        for no, raw in enumerate(f, 1):
            if no > 1 and raw.rstrip("\r\n").split("\t")[-1].startswith('"'):
                first_quoted_title = no
                break
    put(C, t, "first quoted title line", first_quoted_title)

    # test_squad_paragraphs_tsv
    t = "test_squad_paragraphs_tsv"
    h, n, first = FNV_OFFSET, 0, None
    for line, pid, title, text in dpr_tsv_passages(P("wikipedia", "squad-dev-paragraphs", "squad-dev-v1.1-paragraphs.tsv")):
        if first is None:
            first = (pid, line)
        h = mix_passage(h, pid, title, text)
        n += 1
    put(C, t, "count", n)
    put(C, t, "first id", first[0])
    put(C, t, "first line", first[1])
    put(C, t, "digest", h)

    # test_wikiextractor_directory
    t = "test_wikiextractor_directory"
    h, n, docs, esc, amp = FNV_OFFSET, 0, 0, 0, 0
    first = last_id = None
    for item in wikiextractor_dir(P("wikipedia", "enwiki-2019-good-articles-sample", "AA")):
        if item[0] == "doc":
            docs += 1
            continue
        line, path, pid, title, text = item
        n += 1
        if first is None:
            first = (pid, line, os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path)))
        h = mix_passage(h, pid, title, text)
        esc += "&amp;" in title or "&quot;" in title
        amp += "&" in title
        last_id = pid
    put(C, t, "first id", first[0])
    put(C, t, "first line", first[1])
    put(C, t, "first file", first[2])
    put(C, t, "last id", last_id)
    put(C, t, "count", n)
    put(C, t, "docs", docs)
    put(C, t, "escaped titles", esc)
    put(C, t, "titles with '&' > 0", amp > 0)
    put(C, t, "digest", h)

    # test_densephrases_articles
    t = "test_densephrases_articles"
    arts = squad_articles(P("wikipedia", "densephrases-sample", "articles.json"))
    h, ids = FNV_OFFSET, []
    for a in arts:
        for k, p in enumerate(a["paragraphs"]):
            pid = "%s:%d" % (a["title"], k)
            ids.append(pid)
            h = mix_passage(h, pid, a["title"], p["context"])
    put(C, t, "count", len(ids))
    put(C, t, "docs", len(arts))
    for k, a in enumerate(arts):
        put(C, t, "titles[%d]" % k, fnv(a["title"]))
    for k, a in enumerate(arts):
        put(C, t, "paragraphs[%d]" % k, len(a["paragraphs"]))
    put(C, t, "first_id", fnv(ids[0]))
    put(C, t, "last_id", fnv(ids[-1]))
    put(C, t, "digest", h)

    # test_squad_json_as_corpus
    t = "test_squad_json_as_corpus"
    squad = P("squad-v1.1", "dev-v1.1.40-articles.json")
    arts = squad_articles(squad)
    h, n = FNV_OFFSET, 0
    for a in arts:
        for k, p in enumerate(a["paragraphs"]):
            h = mix_passage(h, "%s:%d" % (a["title"], k), a["title"], p["context"])
            n += 1
    put(C, t, "first column", first_object_column(squad, "paragraphs"))
    put(C, t, "count", n)
    put(C, t, "docs", len(arts))
    put(C, t, "digest", h)

    # test_squad_questions
    t = "test_squad_questions"
    h, n, answers, mism, multibyte = FNV_OFFSET, 0, 0, 0, 0
    for a in arts:
        for p in a["paragraphs"]:
            ctx = p["context"]
            for qa in p["qas"]:
                ans = []
                for x in qa["answers"]:
                    sc = x["answer_start"]
                    sb = blen(ctx[:sc])
                    ans.append((x["text"], sc, sb))
                    mism += ctx[sc:sc + len(x["text"])] != x["text"]
                    multibyte += sb != sc
                if n == 0:
                    put(Q, t, "first fnv(id)", fnv(qa["id"]))
                    put(Q, t, "first fnv(question)", fnv(qa["question"]))
                    put(Q, t, "first fnv(title)", fnv(a["title"]))
                    put(Q, t, "first context_len", blen(ctx))
                    put(Q, t, "first n_answers", len(ans))
                    put(Q, t, "first column", first_object_column(squad, "qas"))
                answers += len(ans)
                h = mix_record(h, qa["question"], ans)
                last_id = qa["id"]
                n += 1
    put(Q, t, "count", n)
    put(Q, t, "answers", answers)
    put(Q, t, "mismatches", mism)
    put(Q, t, "multibyte", multibyte)
    put(Q, t, "last_id", fnv(last_id))
    put(Q, t, "digest", h)

    # test_trivia_dev_csv
    t = "test_trivia_dev_csv"
    trivia = P("odqa-qa-lists", "topics.dpr.trivia.dev.txt")
    with open(trivia, "rb") as f:
        raw = f.read()
    put(Q, t, "lf", raw.count(b"\n"))
    put(Q, t, "crlf", raw.count(b"\r\n"))
    put(Q, t, "nel", raw.count(b"\xc2\x85"))
    put(Q, t, "splitlines", len(raw.decode("utf-8").splitlines()))
    h, n, answers, lines_ok, no_cr = FNV_OFFSET, 0, 0, True, True
    for line, q, ans in dpr_csv_records(trivia):
        n += 1
        lines_ok &= line == n
        no_cr &= not q.endswith("\r")
        if n == 1:
            put(Q, t, "first fnv(question)", fnv(q))
            put(Q, t, "first n_answers", len(ans))
        if n == 27:
            put(Q, t, "#27 question_len", blen(q))
            put(Q, t, "#27 fnv(question)", fnv(q))
            put(Q, t, "#27 quotes", q.count('"'))
        answers += len(ans)
        h = mix_record(h, q, [(x, None, None) for x in ans])
        last = (q, ans)
    first_quoted = next(i for i, l in enumerate(raw.split(b"\r\n"), 1) if l.startswith(b'"'))
    put(Q, t, "first quoted question (record)", first_quoted)
    put(Q, t, "every line == n", lines_ok)
    put(Q, t, "no question ends in CR", no_cr)
    put(Q, t, "last fnv(question)", fnv(last[0]))
    put(Q, t, "last n_answers", len(last[1]))
    put(Q, t, "count", n)
    put(Q, t, "answers", answers)
    put(Q, t, "digest", h)
    h, n = FNV_OFFSET, 0
    for _, q, ans in jsonl_records(P("odqa-qa-lists", "jsonl", "trivia-dev.jsonl")):
        h = mix_record(h, q, [(x, None, None) for x in ans])
        n += 1
    put(Q, t, "jsonl count", n)
    put(Q, t, "jsonl digest", h)

    # test_nq_csv
    t = "test_nq_csv"
    h, n = FNV_OFFSET, 0
    for line, q, ans in dpr_csv_records(P("odqa-qa-lists", "topics.nq.test.txt")):
        n += 1
        if n == 1:
            put(Q, t, "first fnv(question)", fnv(q))
            put(Q, t, "first n_answers", len(ans))
            put(Q, t, "first fnv(answer[0])", fnv(ans[0]))
        if line == 579:
            put(Q, t, "line 579 n_answers", len(ans))
            put(Q, t, "line 579 fnv(answer[0])", fnv(ans[0]))
            put(Q, t, "line 579 fnv(answer[1])", fnv(ans[1]))
        h = mix_record(h, q, [(x, None, None) for x in ans])
    put(Q, t, "count", n)
    put(Q, t, "digest", h)
    h, n = FNV_OFFSET, 0
    for _, q, ans in dpr_csv_records(P("odqa-qa-lists", "topics.dpr.nq.test.txt")):
        h = mix_record(h, q, [(x, None, None) for x in ans])
        n += 1
    put(Q, t, "dpr count", n)
    put(Q, t, "dpr digest", h)

    # test_jsonl_files
    t = "test_jsonl_files"

    def jl(path):
        h, n, na = FNV_OFFSET, 0, 0
        for _, q, ans in jsonl_records(path):
            h = mix_record(h, q, [(x, None, None) for x in ans])
            n += 1
            na += len(ans)
        return h, n, na

    h, n, na = jl(P("odqa-qa-lists", "jsonl", "curatedtrec-test.jsonl"))
    put(Q, t, "curatedtrec count", n)
    put(Q, t, "curatedtrec answers", na)
    put(Q, t, "curatedtrec digest", h)
    h, n, na = jl(P("odqa-qa-lists", "topics.dpr.curated.test.txt"))
    put(Q, t, "curated original count", n)
    put(Q, t, "curated original digest", h)
    h, n, na = jl(P("nq-open", "NQ-open.dev.jsonl"))
    put(Q, t, "NQ-open.dev count", n)
    put(Q, t, "NQ-open.dev digest", h)
    h, n, na = jl(P("nq-open", "NQ-open.efficientqa.test.1.1.jsonl"))
    put(Q, t, "efficientqa.test count", n)
    dq = P("wikipedia", "densephrases-sample", "questions.json")
    with open(dq, encoding="utf-8") as f:
        recs = json.load(f)["data"]
    with open(dq, encoding="utf-8") as f:
        text = f.read().split("\n")
    h = FNV_OFFSET
    for k, r in enumerate(recs):
        # the record's line: the '{' that opens the k-th object in "data"
        opens = [i for i, l in enumerate(text, 1) if l.strip() == "{"][1:]
        put(Q, t, "questions.json[%d] id" % k, r["id"])
        put(Q, t, "questions.json[%d] line" % k, opens[k])
        put(Q, t, "questions.json[%d] n_answers" % k, len(r["answers"]))
        h = mix_record(h, r["question"], [(x, None, None) for x in r["answers"]])
    put(Q, t, "questions.json count", len(recs))
    put(Q, t, "questions.json digest", h)

    # tests/test_data_metrics.c (real-data counts that plain Python reproduces;
    # the regex counts of test_curatedtrec_patterns are not recomputed here)
    M = "tests/test_data_metrics.c"
    t = "test_curatedtrec_patterns"
    n_sent = 0
    for k, (_, _, _, text) in enumerate(dpr_tsv_passages(P("wikipedia", "enwiki-2019-good-articles-sample", "psgs_w100.tsv"))):
        if k == 50:
            break
        n_sent += len(text.split(". "))
    put(M, t, "n_sentences", n_sent)
    recs = list(jsonl_records(P("odqa-qa-lists", "jsonl", "curatedtrec-test.jsonl")))
    put(M, t, "n", len(recs))
    put(M, t, "every record has 1 answer", all(len(a) == 1 for _, _, a in recs))

    t = "test_squad_metrics"
    contexts, answers = [], []
    for a in arts:
        for p in a["paragraphs"]:
            for qa in p["qas"]:
                contexts.append(p["context"])
                answers.append([x["text"] for x in qa["answers"]])
    N = len(contexts)
    multi = em = 0
    f1 = 0.0
    for ans in answers:
        if len(ans) >= 2:
            multi += 1
            em += max(squad_em(ans[0], g) for g in ans[1:])
            f1 += max(squad_f1(ans[0], g) for g in ans[1:])
    put(M, t, "N", N)
    put(M, t, "multi", multi)
    put(M, t, "em", em)
    put(M, t, "f1", round(f1, 9))
    own = sum(has_answer(contexts[i], answers[i]) for i in range(N))
    shifted = sum(has_answer(contexts[(i + 997) % N], answers[i]) for i in range(N))
    put(M, t, "own", own)
    put(M, t, "shifted", shifted)
    return out


# --- expected values as written in the C tests --------------------------------------
# (file, test, name) -> the literal as it appears in the .c file.

EXPECTED = {
    ("test_psgs_w100", "first id"): '"1"',
    ("test_psgs_w100", "first text_len"): "644",
    ("test_psgs_w100", "first fnv(text)"): "0xc2ffdd423ebaf57eull",
    ("test_psgs_w100", "first fnv(title)"): "0xb9e98d117cca599cull",
    ("test_psgs_w100", "first text quotes"): "8",
    ("test_psgs_w100", "line 20866 id"): '"20865"',
    ("test_psgs_w100", "line 20866 title_len"): "16",
    ("test_psgs_w100", "line 20866 fnv(title)"): "0xdb0b0d1e317006faull",
    ("test_psgs_w100", "every line == n+1"): "true",
    ("test_psgs_w100", "last id"): '"55597"',
    ("test_psgs_w100", "last text_len"): "335",
    ("test_psgs_w100", "last fnv(text)"): "0x2a05e66f92ff6d17ull",
    ("test_psgs_w100", "last fnv(title)"): "0xd0d5b103a348c484ull",
    ("test_psgs_w100", "count"): "55597",
    ("test_psgs_w100", "digest"): "0x23434e859911749dull",
    ("test_psgs_w100", "first quoted title line"): "20866",
    ("test_squad_paragraphs_tsv", "count"): "1682",
    ("test_squad_paragraphs_tsv", "first id"): '"1"',
    ("test_squad_paragraphs_tsv", "first line"): "2",
    ("test_squad_paragraphs_tsv", "digest"): "0x5debbfeb34ef5db0ull",
    ("test_wikiextractor_directory", "first id"): '"339:0"',
    ("test_wikiextractor_directory", "first line"): "4",
    ("test_wikiextractor_directory", "first file"): '"AA/wiki_00"',
    ("test_wikiextractor_directory", "last id"): '"56640763:6"',
    ("test_wikiextractor_directory", "count"): "52456",
    ("test_wikiextractor_directory", "docs"): "1990",
    ("test_wikiextractor_directory", "escaped titles"): "0",
    ("test_wikiextractor_directory", "titles with '&' > 0"): "true",
    ("test_wikiextractor_directory", "digest"): "0x3c937f1976f50946ull",
    ("test_densephrases_articles", "count"): "112",
    ("test_densephrases_articles", "docs"): "4",
    ("test_densephrases_articles", "titles[0]"): "0x54ce6f5e7647c5dbull",
    ("test_densephrases_articles", "titles[1]"): "0x23a7890fcdec778cull",
    ("test_densephrases_articles", "titles[2]"): "0x5b27e1e498558f89ull",
    ("test_densephrases_articles", "titles[3]"): "0xa7835b7208c68c13ull",
    ("test_densephrases_articles", "paragraphs[0]"): "11",
    ("test_densephrases_articles", "paragraphs[1]"): "79",
    ("test_densephrases_articles", "paragraphs[2]"): "11",
    ("test_densephrases_articles", "paragraphs[3]"): "11",
    ("test_densephrases_articles", "first_id"): "0x6b083b9221b74f39ull",
    ("test_densephrases_articles", "last_id"): "0xb9b11c39f87e1c7aull",
    ("test_densephrases_articles", "digest"): "0x8cbc9301d0f00a2dull",
    ("test_squad_json_as_corpus", "first column"): "71",
    ("test_squad_json_as_corpus", "count"): "1682",
    ("test_squad_json_as_corpus", "docs"): "40",
    ("test_squad_json_as_corpus", "digest"): "0xe23c0364e7c25b1aull",
    ("test_squad_questions", "first fnv(id)"): "0x9a5d05e2f2f10dacull",
    ("test_squad_questions", "first fnv(question)"): "0xc39170d4f585e4bfull",
    ("test_squad_questions", "first fnv(title)"): "0xdfe9ad0e4716e63dull",
    ("test_squad_questions", "first context_len"): "777",
    ("test_squad_questions", "first n_answers"): "3",
    ("test_squad_questions", "first column"): "876",
    ("test_squad_questions", "count"): "8847",
    ("test_squad_questions", "answers"): "29212",
    ("test_squad_questions", "mismatches"): "0",
    ("test_squad_questions", "multibyte"): "4541",
    ("test_squad_questions", "last_id"): "0x955c8c6b4f73d293ull",
    ("test_squad_questions", "digest"): "0x0f6a3212ee03e543ull",
    ("test_trivia_dev_csv", "lf"): "8837",
    ("test_trivia_dev_csv", "crlf"): "8837",
    ("test_trivia_dev_csv", "nel"): "3",
    ("test_trivia_dev_csv", "splitlines"): "8,840",  # the README figure quoted in the comment
    ("test_trivia_dev_csv", "first fnv(question)"): "0x75833746bfbf2db9ull",
    ("test_trivia_dev_csv", "first n_answers"): "14",
    ("test_trivia_dev_csv", "#27 question_len"): "77",
    ("test_trivia_dev_csv", "#27 fnv(question)"): "0x9d69bf22a08962cfull",
    ("test_trivia_dev_csv", "#27 quotes"): "6",
    ("test_trivia_dev_csv", "first quoted question (record)"): "27",
    ("test_trivia_dev_csv", "every line == n"): "true",
    ("test_trivia_dev_csv", "no question ends in CR"): "true",
    ("test_trivia_dev_csv", "last fnv(question)"): "0xc903d7955de7ac7dull",
    ("test_trivia_dev_csv", "last n_answers"): "1",
    ("test_trivia_dev_csv", "count"): "8837",
    ("test_trivia_dev_csv", "answers"): "121721",
    ("test_trivia_dev_csv", "digest"): "0x2b548eaa1da60904ull",
    ("test_trivia_dev_csv", "jsonl count"): "8837",
    ("test_trivia_dev_csv", "jsonl digest"): "0x2b548eaa1da60904ull",
    ("test_nq_csv", "first fnv(question)"): "0xa40b7048c16102b6ull",
    ("test_nq_csv", "first n_answers"): "1",
    ("test_nq_csv", "first fnv(answer[0])"): "0x2b0da47a15f35581ull",
    ("test_nq_csv", "line 579 n_answers"): "2",
    ("test_nq_csv", "line 579 fnv(answer[0])"): "0xd2e4d38434f47a90ull",
    ("test_nq_csv", "line 579 fnv(answer[1])"): "0x13bbe87467608844ull",
    ("test_nq_csv", "count"): "3610",
    ("test_nq_csv", "digest"): "0x505a7c2c1bf563efull",
    ("test_nq_csv", "dpr count"): "3610",
    ("test_nq_csv", "dpr digest"): "0xf205f82c2b6c3524ull",
    ("test_jsonl_files", "curatedtrec count"): "694",
    ("test_jsonl_files", "curatedtrec answers"): "694",
    ("test_jsonl_files", "curatedtrec digest"): "0xcc2c57eb30be7eddull",
    ("test_jsonl_files", "curated original count"): "694",
    ("test_jsonl_files", "curated original digest"): "0xcc2c57eb30be7eddull",
    ("test_jsonl_files", "NQ-open.dev count"): "3610",
    ("test_jsonl_files", "NQ-open.dev digest"): "0x3251ba9435efc559ull",
    ("test_jsonl_files", "efficientqa.test count"): "1769",
    ("test_jsonl_files", "questions.json[0] id"): '"1"',
    ("test_jsonl_files", "questions.json[1] id"): '"2"',
    ("test_jsonl_files", "questions.json[2] id"): '"3"',
    ("test_jsonl_files", "questions.json[0] line"): "3",
    ("test_jsonl_files", "questions.json[1] line"): "8",
    ("test_jsonl_files", "questions.json[2] line"): "13",
    ("test_jsonl_files", "questions.json[0] n_answers"): "2",
    ("test_jsonl_files", "questions.json[1] n_answers"): "1",
    ("test_jsonl_files", "questions.json[2] n_answers"): "1",
    ("test_jsonl_files", "questions.json count"): "3",
    ("test_jsonl_files", "questions.json digest"): "0x0613e33443e208ceull",
    ("test_curatedtrec_patterns", "n_sentences"): "275",
    ("test_curatedtrec_patterns", "n"): "694",
    ("test_curatedtrec_patterns", "every record has 1 answer"): "true",
    ("test_squad_metrics", "N"): "8847",
    ("test_squad_metrics", "multi"): "8844",
    ("test_squad_metrics", "em"): "7254",
    ("test_squad_metrics", "f1"): "8169.689680855",
    ("test_squad_metrics", "own"): "8846",
    ("test_squad_metrics", "shifted"): "45",
}


def render(v, name):
    """The value as the C test writes it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "%.9f" % v
    if isinstance(v, str):
        return '"%s"' % v
    if any(w in name for w in ("digest", "fnv(", "titles[", "_id")) and name not in ("first id", "last id"):
        return "0x%016xull" % v
    return "%d" % v


def test_body(src, test):
    m = re.search(r"static void %s\(void \*\*state\) \{(.*?)\n\}\n" % re.escape(test), src, re.S)
    return m.group(1) if m else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    sources = {}
    bad = 0
    for file, test, name, value in compute(args.shared):
        got = render(value, name)
        shown = got[:-3] if got.endswith("ull") else got
        want = EXPECTED.get((test, name))
        status = ""
        if args.check:
            if file not in sources:
                with open(os.path.join(REPO, file), encoding="utf-8") as f:
                    sources[file] = f.read()
            body = test_body(sources[file], test)
            w = want.replace(",", "") if want else None
            if w is None:
                status = "  [no expected value listed]"
                bad += 1
            elif w != got:
                status = "  MISMATCH: test has %s" % want
                bad += 1
            elif want not in body and want not in sources[file] and got not in ("true", "false"):
                status = "  [expected %s not found in %s]" % (want, file)
                bad += 1
            else:
                status = "  ok"
        print("%s %s %s%s" % (test, name, shown, status))
    if args.check:
        print("%d value(s) differ" % bad if bad else "all values match the C tests", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
