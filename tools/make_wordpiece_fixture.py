#!/usr/bin/env python3
r"""Reference data for encoder/wordpiece.c, from Hugging Face's tokenizer.

    .venv/bin/python tools/make_wordpiece_fixture.py            # writes tests/fixtures/wordpiece_cases.txt
    .venv/bin/python tools/make_wordpiece_fixture.py --c-tables # prints the C tables of wordpiece.c

The fixture holds only derived data for the real texts: where each text lies
under the shared data dir (file, line, field, byte range), an FNV-1a hash of
its bytes, and HF's ids with byte offsets. The texts themselves stay in
../shared; tests/test_wordpiece.c reads them at run time. Only the edge cases
written here (and random strings drawn from a pool of tricky characters) are
stored verbatim.

Format (one record a line, '#' lines are comments):
    phrex-wordpiece-fixture 1
    vocab <fnv1a64 of vocab.txt, hex>
    case <name> <mode> <fnv1a64 of text> <ntokens> data <relpath> <line> <field> <byte_start> <byte_end>
    case <name> <mode> <fnv1a64 of text> <ntokens> text <escaped text, to the end of the line>
    tok <id>,<start - previous end>,<end - start> ...
    sweep <pattern> <mode> <first cp hex> <last cp hex> <ntokens> <hash of tokens>
mode: L = do_lower_case (the model's own setting), C = cased (do_lower_case False).
line: 1-based. field: tsv:<column> (csv-quoted TSV) or json:<key>. Byte ranges
index the UTF-8 of the decoded field. Escapes in text: \\ (a backslash),
\xHH (a byte), \u{HEX} (a code point). A sweep tokenizes every code point c
in [first, last] but surrogates, each put in SWEEP_PATTERNS[pattern] and
joined by spaces; its hash is FNV-1a 64 over the 32-bit words id, start, end
of all its tokens (FNV's step on words instead of bytes).
"""
import argparse
import csv
import json
import os
import random
import re
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
MODEL = os.path.join(ROOT, "models", "base", "all-MiniLM-L6-v2")
OUT = os.path.join(ROOT, "tests", "fixtures", "wordpiece_cases.txt")
SWEEP_BLOCK = 4096  # code points per sweep record

csv.field_size_limit(1 << 30)


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


# --- the reference tokenizer -------------------------------------------------

def load_tokenizers():
    from transformers import BertTokenizerFast
    # split_special_tokens: literal "[SEP]" in text is text, as in phrex.
    lower = BertTokenizerFast.from_pretrained(MODEL, split_special_tokens=True)
    cased = BertTokenizerFast.from_pretrained(MODEL, split_special_tokens=True, do_lower_case=False)
    assert "lowercase=True" in repr(lower.backend_tokenizer.normalizer)
    assert "lowercase=False" in repr(cased.backend_tokenizer.normalizer)
    return {"L": lower, "C": cased}


def byte_offsets(text, offsets):
    # HF offsets count code points; phrex counts UTF-8 bytes.
    pos = [0]
    for ch in text:
        pos.append(pos[-1] + len(ch.encode("utf-8")))
    return [(pos[s], pos[e]) for s, e in offsets]


def encode_many(tok, texts):
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for text, ids, offs in zip(texts, enc["input_ids"], enc["offset_mapping"]):
        out.append([(i, s, e) for i, (s, e) in zip(ids, byte_offsets(text, offs))])
    return out


# --- C tables: what the HF components do to each code point -------------------

def probe_code_points():
    """Classes as tokenizers sees them. Its unicode_categories tables are from
    an old Unicode version, so they cannot be taken from utf8proc."""
    from tokenizers import normalizers, pre_tokenizers
    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    cjk = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    nfd = normalizers.NFD()
    low = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    classes, lower_exc, nfd_keep = {}, {}, []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        cleaned = clean.normalize_str(c)
        words = len(pre.pre_tokenize_str("a" + c + "b"))
        d = nfd.normalize_str(c)
        if cleaned == "":
            classes[cp] = "DROP"
        elif cleaned == " " or (cp == 0x20):
            classes[cp] = "SPACE"
        elif cjk.normalize_str(c) != c:
            classes[cp] = "CJK"
        elif words == 3:
            classes[cp] = "PUNCT"
        elif d == c and strip.normalize_str(c) == "":
            classes[cp] = "MARK"
        else:
            assert words == 1, hex(cp)
        # NFD and lowercase come from utf8proc in C; list where HF differs
        # from Python's unicodedata (a proxy for a current Unicode).
        if d != unicodedata.normalize("NFD", c):
            assert d == c, "tokenizers decomposes U+%04X where Python does not" % cp
            nfd_keep.append(cp)
        # NFD reorders marks by canonical combining class (from utf8proc in
        # C); list the characters that survive accent stripping and yet get
        # reordered: spacing marks with a class. A mark of class > 1 moves
        # after U+0334 (class 1); one of class 1 moves before U+0301 (230).
        ccc = unicodedata.combining(c)
        if ccc and d == c and classes.get(cp) is None:
            if ccc > 1:
                moves = nfd.normalize_str("a" + c + "\u0334") == "a\u0334" + c
            else:
                moves = nfd.normalize_str("a\u0301" + c) == "a" + c + "\u0301"
            if moves:
                classes[cp] = "NONSTARTER"
        lo = low.normalize_str(c)
        if lo != c.lower() and cp != 0x130:  # U+0130 is decomposed before lowercasing
            assert len(lo) == 1, hex(cp)
            lower_exc[cp] = ord(lo)
    return classes, lower_exc, nfd_keep


def ranges(items):
    out = []  # [lo, hi, value]
    for cp in sorted(items):
        v = items[cp]
        if out and out[-1][1] == cp - 1 and out[-1][2] == v:
            out[-1][1] = cp
        else:
            out.append([cp, cp, v])
    return out


def print_c_tables():
    classes, lower_exc, nfd_keep = probe_code_points()
    import tokenizers
    print("// Generated by tools/make_wordpiece_fixture.py --c-tables (tokenizers %s)." % tokenizers.__version__)
    rs = ranges(classes)
    print("static const class_range class_ranges[%d] = {" % len(rs))
    cells = ["{0x%04X, 0x%04X, CL_%s}," % (lo, hi, v) for lo, hi, v in rs]
    for i in range(0, len(cells), 3):
        print("    " + " ".join(cells[i:i + 3]))
    print("};")
    deltas = ranges({cp: lo - cp for cp, lo in lower_exc.items()})
    print("static const lower_range lower_exceptions[%d] = {" % len(deltas))
    cells = ["{0x%04X, 0x%04X, %d}," % (lo, hi, d) for lo, hi, d in deltas]
    for i in range(0, len(cells), 3):
        print("    " + " ".join(cells[i:i + 3]))
    print("};")
    print("static const int32_t nfd_kept[%d] = {%s};" % (len(nfd_keep), ", ".join("0x%04X" % c for c in nfd_keep)))


# --- real texts ------------------------------------------------------------------

SOURCES = {  # name: (path under the shared data dir, field)
    "psgs": ("wikipedia/enwiki-2019-good-articles-sample/psgs_w100.tsv", "tsv:1"),
    "squad": ("wikipedia/squad-dev-paragraphs/squad-dev-v1.1-paragraphs.tsv", "tsv:1"),
    "nq": ("odqa-qa-lists/jsonl/nq-test.jsonl", "json:question"),
    "tqa": ("odqa-qa-lists/jsonl/trivia-test.jsonl", "json:question"),
    "scifact": ("beir-scifact/corpus.jsonl", "json:text"),
}


def read_fields(path, field):
    """Yields (line number, decoded field) for every data line of a file."""
    kind, key = field.split(":")
    with open(os.path.join(SHARED, path), encoding="utf-8", newline="\n") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if kind == "tsv":
                if number == 1:
                    continue  # the header
                row = next(csv.reader([line], delimiter="\t"))
                yield number, row[int(key)]
            else:
                yield number, json.loads(line)[key]


def sentences(text):
    """(start, end) character spans of sentences: cut after . ! ? + space."""
    start = 0
    for m in re.finditer(r"(?<=[.!?])\s+", text):
        yield start, m.start()
        start = m.end()
    if start < len(text):
        yield start, len(text)


def script_of(text):
    """A coarse label of the most interesting non-ASCII content, or None."""
    labels = set()
    for ch in text:
        if ord(ch) < 128:
            continue
        name = unicodedata.name(ch, "")
        cat = unicodedata.category(ch)
        if "CJK" in name or name.startswith(("HIRAGANA", "KATAKANA", "HANGUL")):
            labels.add("cjk")
        elif name.startswith("GREEK"):
            labels.add("greek")
        elif name.startswith("CYRILLIC"):
            labels.add("cyrillic")
        elif name.startswith("LATIN"):
            labels.add("latin")
        elif cat[0] in "LM":
            labels.add("script")
        else:
            labels.add("symbol")
    for label in ("cjk", "script", "greek", "cyrillic", "symbol", "latin"):
        if label in labels:
            return label
    return None


def pick_real(rng):
    """Cases of real text: sentences of passages, whole questions. Weighted
    towards non-ASCII text on purpose."""
    plan = {  # name: (quota per label, ASCII-only quota, whole field?)
        "psgs": ({"latin": 100, "greek": 50, "cyrillic": 50, "cjk": 50, "script": 50, "symbol": 60}, 140, False),
        "squad": ({"latin": 20, "greek": 10, "cyrillic": 10, "cjk": 10, "script": 10, "symbol": 20}, 80, False),
        "nq": ({"latin": 10, "symbol": 10}, 130, True),
        "tqa": ({"latin": 30, "greek": 5, "cyrillic": 5, "symbol": 20}, 90, True),
        "scifact": ({"greek": 40, "latin": 20, "symbol": 40, "script": 5, "cjk": 5}, 90, False),
    }
    cases = []
    for name, (quotas, ascii_quota, whole) in plan.items():
        path, field = SOURCES[name]
        pools = {}
        for number, text in read_fields(path, field):
            spans = [(0, len(text))] if whole else sentences(text)
            for s, e in spans:
                piece = text[s:e]
                size = len(piece.encode("utf-8"))
                if not piece.strip() or size > 300 or (not whole and size < 30):
                    continue
                b0 = len(text[:s].encode("utf-8"))
                label = script_of(piece) or "ascii"
                pools.setdefault(label, []).append((number, b0, b0 + size, piece))
        quotas = dict(quotas, ascii=ascii_quota)
        for label, quota in quotas.items():
            pool = pools.get(label, [])
            for number, b0, b1, piece in rng.sample(pool, min(quota, len(pool))):
                cases.append({"name": name, "path": path, "field": field, "line": number,
                              "range": (b0, b1), "text": piece})
    cases.sort(key=lambda c: (c["path"], c["line"], c["range"]))
    return cases


# --- edge cases, written here ----------------------------------------------------

EDGE = [
    ("accents", "Café naïve résumé façade Ångström Øresund Łódź Dvořák Gödel"),
    ("decomposed", "e\u0301cole Cafe\u0301 n\u0303 a\u0308\u0304 \u0301abc \u0301 x\u0301\u0302y"),
    ("dotted-i", "İstanbul DİYARBAKIR İ ıi"),
    ("sharp-s", "Die Straße, GROẞE STRAẞE ß ẞ"),
    ("ligatures", "ﬁnancial ﬂow ﬀ ﬃ ﬄ ﬅ ﬆ Æsir œuvre Ĳssel"),
    ("greek", "ΟΔΥΣΣΕΥΣ Σοφία ΣΑΣ ς σ Ἀθῆναι ᾂ ᾼ ΐ ΰ ῾ ` ΅ ; ·"),
    ("cyrillic", "Москва ЁЖИК й Ї ґ Ў"),
    ("vietnamese", "Tiếng Việt có dấu: Nguyễn Thị Minh Khai"),
    ("rtl", "العَرَبِيَّة שָׁלוֹם עברית"),
    ("indic", "हिन्दी भाषा தமிழ் ไทย ภาษาไทย"),
    ("hangul", "한국어 대한민국 \u1100\u1161\u11a8 \u302e가 가\u302e\u0301"),
    ("cjk", "北京大学 is in 北京。東京タワー テスト 中文字 丽 \U00020000 \u2f00"),
    ("cjk-inword", "naïveté中文abc x\u4e2d\u0301y 中\u302e"),
    ("emoji", "I ❤️ NY 🥰🎉 👍🏽 family 👨‍👩‍👧 flag 🇫🇷 ☃ ✓"),
    ("controls", "a\x00b\x01c\x7fd\te\nf\rg\x0bh\x0ci\x85j\x1bk"),
    ("spaces", "100\u00a0km, 5\u202fm, x\u2009y\u3000z\u1680w\u2028v\u2029u"),
    ("zero-width", "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom \u2060word \u00adsoft\u00adhyphen"),
    ("replacement", "bad\ufffdchar \ufffd"),
    ("private-use", "\ue000private \U000f0000x"),
    ("symbols", "∑ ∫ √ ± × ÷ ° µ € £ ¥ © ® ™ ½ ² Ⅻ ℃ K Ω Å"),
    ("punctuation", "«quoted» — dash – ‘single’ “double” … ¿qué? ¡sí! ‹›〈〉【】・"),
    ("punct-after-nfd", "≠ ≮ ≯ a≠b ;x ῭x"),
    ("fullwidth", "ＡＢＣ１２３！？ｶﾀｶﾅ"),
    ("titlecase", "ǅ ǈ ǋ ǲ ŉ ſ ẛ"),
    ("apostrophes", "don't don’t donʼt don＇t O'Neill rock 'n' roll"),
    ("numbers", "3.14159 1,000,000 $5.00 #tag @user 50% a/b c\\d e|f ~g ^h _i `j`"),
    ("specials", "[CLS] [SEP] [MASK] [UNK] [PAD] [unused0] ##ing ##"),
    ("unicode16-lower", "\ua7cb\ua7dc\u1c89 \U00010d50x"),
    ("new-format", "\u0890x\u08e2y\U00013430z"),
    ("marks-mixed", "\U0001d15e\u0f73\u0f75\u302e\u1d165 \u0915\u094d\u0937"),
    ("unk-word", "abc☃def xyz\U0001f970"),
    ("empty", ""),
    ("only-spaces", "   \t\n  "),
    ("only-dropped", "\u200b\u200b\x00\ufeff"),
    ("only-marks", "\u0301\u0302 \u0308"),
    ("long-100", "a" * 100),
    ("long-101", "a" * 101),
    ("long-accent-100", "é" * 100),
    ("long-accent-101", "é" * 101),
    ("long-decomposed-101", "e\u0301" * 101),
    ("long-zw-100", "ab\u200b" * 50),
    ("long-hangul-34", "한" * 34),
    ("long-in-sentence", "before " + "x" * 150 + " after" + "y" * 99 + " end"),
    ("long-cjk", "中" * 150),
]

FUZZ_POOL = (
    list("aAbZé É ,.!?-'\"#") +
    [chr(c) for c in (0x301, 0x300, 0x308, 0x327, 0x345, 0x1D165, 0x1D16D, 0x302E, 0x130, 0x131,
                      0x1E9E, 0xDF, 0xFB01, 0x3A3, 0x3C2, 0x1F82, 0x1FEF, 0x2260, 0x37E, 0xAC00,
                      0xD55C, 0x1100, 0x1161, 0x4E2D, 0xF900, 0x2F800, 0x20000, 0x200B, 0x200D,
                      0xFEFF, 0xA0, 0x3000, 0x85, 0xB, 0, 0xFFFD, 0xE000, 0x1F970, 0x1F3FD, 0x2126,
                      0x212A, 0x1C89, 0xA7CB, 0x11938, 0x890, 0x1734, 0x166D, 0x2E43, 0x0E31,
                      0x0E49, 0x093F, 0x094D, 0x0915, 0x05B8, 0x05D0, 0x0627, 0x064E, 0x01C5,
                      0x0149, 0x1E9B, 0x0340, 0x0344, 0x0F73, 0x0F75, 0x0F81, 0x1D15E, 0x1D160,
                      0x3099, 0x309A, 0x304B, 0x30AB, 0x0CCB, 0x0DDA, 0x08D4, 0x1AC0, 0x1E000)])

SWEEP_PATTERNS = ["a{}b", "a\u0301{}\u0334b", "\u302e{}\u0327\U0001d165x"]  # test_wordpiece.c has the same


def escape(text):
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o < 0x80:
            out.append("\\x%02X" % o)
        elif unicodedata.category(ch)[0] in "CZM" or o == 0xFFFD:
            out.append("\\u{%X}" % o)
        else:
            out.append(ch)
    if out and out[-1] == " ":
        out[-1] = "\\x20"  # editors strip trailing blanks
    return "".join(out)


def sweep_hash(toks):
    # FNV-1a over 32-bit words (not bytes), to keep Python fast on 3M tokens.
    h = 0xCBF29CE484222325
    for t in toks:
        for v in t:
            h = ((h ^ (v & 0xFFFFFFFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def write_fixture(path):
    import tokenizers
    import transformers
    toks = load_tokenizers()
    rng = random.Random(20240601)
    real = pick_real(rng)
    cased = sorted(rng.sample(range(len(real)), 150))
    fuzz = ["".join(rng.choice(FUZZ_POOL) for _ in range(rng.randint(1, 30))) for _ in range(150)]
    own = [(name, text) for name, text in EDGE] + [("fuzz", t) for t in fuzz]

    cases = [dict(c, mode="L") for c in real] + [dict(real[i], mode="C") for i in cased]
    cases += [{"name": name, "mode": mode, "text": text} for mode in "LC" for name, text in own]
    for mode in "LC":
        idx = [i for i, c in enumerate(cases) if c["mode"] == mode]
        for i, t in zip(idx, encode_many(toks[mode], [cases[i]["text"] for i in idx])):
            cases[i]["tokens"] = t

    with open(os.path.join(MODEL, "vocab.txt"), "rb") as f:
        vocab_hash = fnv1a64(f.read())
    lines = [
        "phrex-wordpiece-fixture 1",
        "# HF BertTokenizerFast (split_special_tokens=True) ids with byte offsets; see",
        "# tools/make_wordpiece_fixture.py for the format. tokenizers %s, transformers %s."
        % (tokenizers.__version__, transformers.__version__),
        "vocab %016x" % vocab_hash,
    ]
    for c in cases:
        head = "case %s %s %016x %d" % (c["name"], c["mode"], fnv1a64(c["text"].encode("utf-8")), len(c["tokens"]))
        if "path" in c:
            lines.append("%s data %s %d %s %d %d" % (head, c["path"], c["line"], c["field"], *c["range"]))
        else:
            lines.append("%s text %s" % (head, escape(c["text"])))
        cells, prev = [], 0
        for i, s, e in c["tokens"]:
            cells.append("%d,%d,%d" % (i, s - prev, e - s))
            prev = e
        lines.append(" ".join(["tok"] + cells))
    n_sweeps = 0
    for p, pattern in enumerate(SWEEP_PATTERNS):
        blocks = []
        for lo in range(0, 0x110000, SWEEP_BLOCK):
            hi = lo + SWEEP_BLOCK - 1
            cps = [c for c in range(lo, hi + 1) if not 0xD800 <= c <= 0xDFFF]
            blocks.append((lo, hi, " ".join(pattern.format(chr(c)) for c in cps)))
        for mode in "LC":
            for (lo, hi, _), t in zip(blocks, encode_many(toks[mode], [b[2] for b in blocks])):
                lines.append("sweep %d %s %X %X %d %016x" % (p, mode, lo, hi, len(t), sweep_hash(t)))
                n_sweeps += 1
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("%s: %d cases (%d from ../shared), %d sweeps, %d bytes"
          % (path, len(cases), sum("path" in c for c in cases), n_sweeps, os.path.getsize(path)))


# --- main -----------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--c-tables", action="store_true", help="print the C tables of encoder/wordpiece.c")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    if args.c_tables:
        print_c_tables()
        return
    write_fixture(args.out)


if __name__ == "__main__":
    main()
