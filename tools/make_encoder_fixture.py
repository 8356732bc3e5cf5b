#!/usr/bin/env python3
"""Parity fixture for encoder/bert.c, from Hugging Face's BertModel.

    .venv/bin/python tools/make_encoder_fixture.py   # writes tests/fixtures/encoder_parity.bin

Runs all-MiniLM-L6-v2 (BertModel, eval, float32, eager attention, one
sequence at a time so no padding is involved) on real text from the shared
data dir: NQ test questions, first sentences of SQuAD dev paragraphs, whole
paragraphs (128 to 300+ tokens), one 512-token window, question/sentence
pairs (token type 1) and a few sentences truncated to 2..6 tokens. Only
derived data is stored (token ids and model outputs), never the text.

Format, little-endian:
    header (40 bytes):
        char[8] magic "PHXENCPF"
        u32 version (1)
        u32 n_seqs
        u32 hidden            C
        u32 stride            token vectors keep dims 0, stride, 2*stride, ...
        u32 n_sub             ceil(C / stride)
        u32 reserved (0)
        u64 fnv1a64 of the body (every byte after the header)
    body, per sequence:
        u32 len, u32 flags    flags bit 0: full token vectors follow
        i32 ids[len], i32 type_ids[len]
        f32 mean[C]           mean of the token vectors (unnormalised)
        f32 mean_l2[C]        the same, L2-normalised (sentence-transformers)
        f32 sub[len][n_sub]   every token's vector at the strided dims
        f32 full[len][C]      only when flags bit 0
"""
import csv
import json
import os
import re
import struct

import torch
from transformers import BertModel, BertTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
MODEL = os.path.join(ROOT, "models", "base", "all-MiniLM-L6-v2")
OUT = os.path.join(ROOT, "tests", "fixtures", "encoder_parity.bin")
SQUAD = os.path.join(SHARED, "wikipedia", "squad-dev-paragraphs", "squad-dev-v1.1-paragraphs.tsv")
NQ = os.path.join(SHARED, "odqa-qa-lists", "jsonl", "nq-test.jsonl")

MAGIC = b"PHXENCPF"
VERSION = 1
STRIDE = 12
N_QUESTIONS = 24
N_FIRST_SENTENCES = 20
PARAGRAPH_TARGETS = [130, 160, 200, 250, 310]  # token counts to pick paragraphs near
TRUNCATED = [2, 3, 4, 6]
N_FULL = 5  # sequences that also get full token vectors (the shortest non-trivial ones)

csv.field_size_limit(1 << 30)


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def read_paragraphs():
    with open(SQUAD, newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f, delimiter="\t")]


def read_questions(n):
    with open(NQ, encoding="utf-8") as f:
        return [json.loads(line)["question"] for line, _ in zip(f, range(n))]


def first_sentence(text):
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", text, maxsplit=1)[0]


def collect(tok):
    """A list of (ids, type_ids) covering short, medium, long and paired inputs."""
    paragraphs = read_paragraphs()
    questions = read_questions(N_QUESTIONS)
    seqs = []

    def add(enc):
        seqs.append((enc["input_ids"], enc["token_type_ids"]))

    for q in questions:
        add(tok(q))
    # Paragraphs in steps so the first sentences come from different articles.
    step = len(paragraphs) // N_FIRST_SENTENCES
    firsts = [first_sentence(paragraphs[i * step]) for i in range(N_FIRST_SENTENCES)]
    for s in firsts:
        add(tok(s))
    for n, s in zip(TRUNCATED, firsts):
        add(tok(s, truncation=True, max_length=n))
    for q, s in zip(questions[:2], firsts[-2:]):
        add(tok(q, s))  # a pair: the sentence gets token type 1
    lengths = [len(tok(p, verbose=False)["input_ids"]) for p in paragraphs]
    used = set()
    for target in PARAGRAPH_TARGETS:
        best = min((i for i in range(len(paragraphs)) if i not in used), key=lambda i: abs(lengths[i] - target))
        used.add(best)
        add(tok(paragraphs[best]))
    add(tok(" ".join(paragraphs[:8]), truncation=True, max_length=512))
    return seqs


@torch.no_grad()
def run(model, ids, type_ids):
    hidden = model(
        input_ids=torch.tensor([ids]),
        token_type_ids=torch.tensor([type_ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
    ).last_hidden_state[0]  # (len, C)
    mean = hidden.mean(dim=0)
    return hidden, mean, torch.nn.functional.normalize(mean, p=2, dim=0)


def main():
    torch.manual_seed(0)
    tok = BertTokenizerFast.from_pretrained(MODEL)
    model = BertModel.from_pretrained(MODEL, torch_dtype=torch.float32, attn_implementation="eager").eval()
    seqs = collect(tok)
    C = model.config.hidden_size
    n_sub = (C + STRIDE - 1) // STRIDE
    # Full vectors for the N_FULL shortest sequences of 8 tokens or more.
    order = sorted((len(ids), i) for i, (ids, _) in enumerate(seqs) if len(ids) >= 8)
    full = {i for _, i in order[:N_FULL]}
    body = bytearray()
    for i, (ids, type_ids) in enumerate(seqs):
        hidden, mean, mean_l2 = run(model, ids, type_ids)
        body += struct.pack("<II", len(ids), 1 if i in full else 0)
        body += struct.pack(f"<{len(ids)}i", *ids) + struct.pack(f"<{len(ids)}i", *type_ids)
        body += mean.numpy().astype("<f4").tobytes() + mean_l2.numpy().astype("<f4").tobytes()
        body += hidden[:, ::STRIDE].contiguous().numpy().astype("<f4").tobytes()
        if i in full:
            body += hidden.numpy().astype("<f4").tobytes()
    header = MAGIC + struct.pack("<IIIIII", VERSION, len(seqs), C, STRIDE, n_sub, 0) + struct.pack("<Q", fnv1a64(body))
    assert len(header) == 40
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(header + body)
    lens = sorted(len(ids) for ids, _ in seqs)
    print(f"{OUT}: {len(seqs)} sequences, lengths {lens[0]}..{lens[-1]} ({sum(lens)} tokens), "
          f"{len(header) + len(body)} bytes")


if __name__ == "__main__":
    main()
