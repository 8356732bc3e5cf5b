#!/usr/bin/env python3
"""Gradient parity fixture for encoder/train_bert.c, from Hugging Face's BertModel.

    .venv/bin/python tools/make_grad_fixture.py   # writes tests/fixtures/grad_parity.bin

Runs all-MiniLM-L6-v2 (BertModel, float32, eval mode so no dropout, eager
attention, one sequence at a time so no padding is involved) on real text
from the shared data dir (two NQ test questions, a question/sentence pair
with token type 1, and a SQuAD dev paragraph), and back-propagates the
scalar

    loss = sum over packed tokens t and dims j of  H[t, j] * R[t, j]

where H is the last hidden state of the sequences packed back to back and R
is drawn from splitmix64 (encoder/train_rng.h) seeded with SEED: per element
in row-major order, R = 2 * ((x >> 40) * 2^-24) - 1, exact in f32. The C test
regenerates R, so it is not stored. Only derived data is stored (token ids,
the loss, gradients), never the text.

Stored gradients: every 1-D tensor in full (biases, LayerNorm weights and
biases) except the attention key biases, whose true gradient is zero (a
shift of every key's score by q.b cancels in the softmax), so both sides
hold only rounding; SAMPLES random elements of every matrix; the rows of
the word embeddings of the first few distinct ids used; the whole token
type table.

Format, little-endian:
    header (48 bytes):
        char[8] magic "PHXGRADF"
        u32 version (1)
        u32 n_seqs
        u32 n_tensors
        u32 hidden           C
        u64 seed
        f64 loss
        u64 fnv1a64 of the body (every byte after the header)
    body:
        per sequence: u32 len, i32 ids[len], i32 type_ids[len]
        per tensor:   u32 name_len, name bytes (UTF-8, no NUL), u32 numel,
                      u32 count, u32 index[count] (flat, row-major),
                      f32 grad[count]
"""
import csv
import json
import os
import struct

import numpy as np
import torch
from transformers import BertModel, BertTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
MODEL = os.path.join(ROOT, "models", "base", "all-MiniLM-L6-v2")
OUT = os.path.join(ROOT, "tests", "fixtures", "grad_parity.bin")
SQUAD = os.path.join(SHARED, "wikipedia", "squad-dev-paragraphs", "squad-dev-v1.1-paragraphs.tsv")
NQ = os.path.join(SHARED, "odqa-qa-lists", "jsonl", "nq-test.jsonl")

MAGIC = b"PHXGRADF"
VERSION = 1
SEED = 0x5EED_6AD5
SAMPLES = 256  # per matrix
WORD_ROWS = 4  # word-embedding rows stored in full
PARAGRAPH_TOKENS = 120  # pick the paragraph nearest this length

csv.field_size_limit(1 << 30)
MASK = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


class SplitMix64:
    """encoder/train_rng.h, bit for bit."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def symmetric(self):
        return 2.0 * ((self.next_u64() >> 40) * 2.0**-24) - 1.0


def collect(tok):
    with open(NQ, encoding="utf-8") as f:
        questions = [json.loads(line)["question"] for line, _ in zip(f, range(3))]
    with open(SQUAD, newline="", encoding="utf-8") as f:
        paragraphs = [row["text"] for row in csv.DictReader(f, delimiter="\t")][:200]
    lengths = [len(tok(p)["input_ids"]) for p in paragraphs]
    para = min(range(len(paragraphs)), key=lambda i: abs(lengths[i] - PARAGRAPH_TOKENS))
    sentence = paragraphs[para].split(". ")[0]
    seqs = []
    for enc in (tok(questions[0]), tok(questions[1]), tok(questions[2], sentence), tok(paragraphs[para])):
        seqs.append((enc["input_ids"], enc["token_type_ids"]))
    return seqs


def main():
    torch.manual_seed(0)
    tok = BertTokenizerFast.from_pretrained(MODEL)
    model = BertModel.from_pretrained(MODEL, torch_dtype=torch.float32, attn_implementation="eager").eval()
    seqs = collect(tok)
    C = model.config.hidden_size
    n_tokens = sum(len(ids) for ids, _ in seqs)
    rng = SplitMix64(SEED)
    proj = torch.tensor([rng.symmetric() for _ in range(n_tokens * C)], dtype=torch.float32).view(n_tokens, C)

    model.zero_grad()
    loss_total = 0.0
    row = 0
    for ids, type_ids in seqs:
        hidden = model(
            input_ids=torch.tensor([ids]),
            token_type_ids=torch.tensor([type_ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        ).last_hidden_state[0]
        loss = (hidden * proj[row : row + len(ids)]).sum()
        loss.backward()  # gradients of the packed loss are the sum over sequences
        loss_total += float(loss.item())
        row += len(ids)

    pick = np.random.default_rng(SEED)
    used_ids = []
    for ids, _ in seqs:
        for i in ids:
            if i not in used_ids:
                used_ids.append(i)
    entries = []
    for name, p in model.named_parameters():
        if p.grad is None:  # the pooler: not part of last_hidden_state
            continue
        g = p.grad.detach().contiguous().view(-1).numpy().astype("<f4")
        numel = g.size
        if name.endswith("attention.self.key.bias"):
            continue
        if p.dim() == 1 or name == "embeddings.token_type_embeddings.weight":
            idx = np.arange(numel)
        elif name == "embeddings.word_embeddings.weight":
            idx = np.concatenate([np.arange(r * C, (r + 1) * C) for r in used_ids[:WORD_ROWS]])
        elif name == "embeddings.position_embeddings.weight":
            idx = np.sort(pick.choice(max(len(ids) for ids, _ in seqs) * C, SAMPLES, replace=False))
        else:
            idx = np.sort(pick.choice(numel, SAMPLES, replace=False))
        entries.append((name, numel, idx.astype("<u4"), g[idx]))

    body = bytearray()
    for ids, type_ids in seqs:
        body += struct.pack("<I", len(ids)) + struct.pack(f"<{len(ids)}i", *ids) + struct.pack(f"<{len(ids)}i", *type_ids)
    for name, numel, idx, vals in entries:
        nb = name.encode()
        body += struct.pack("<I", len(nb)) + nb + struct.pack("<II", numel, len(idx))
        body += idx.tobytes() + vals.tobytes()
    header = MAGIC + struct.pack("<IIII", VERSION, len(seqs), len(entries), C)
    header += struct.pack("<QdQ", SEED, loss_total, fnv1a64(bytes(body)))
    assert len(header) == 48
    with open(OUT, "wb") as f:
        f.write(header + body)
    print(f"{OUT}: {len(seqs)} sequences ({[len(i) for i, _ in seqs]} tokens), {len(entries)} tensors, "
          f"loss {loss_total:.6f}, {len(header) + len(body)} bytes")


if __name__ == "__main__":
    main()
