#!/usr/bin/env python3
"""Deterministic corpus and day-2 change for Benchmarks/efficiency.sh (issue 17).

    efficiency_corpus.py gen  --root DIR [--factor F]   # day 1: notes, small files, CSVs, binaries
    efficiency_corpus.py day2 --root DIR [--factor F]   # day 2: the change (prints a one-line summary)
    efficiency_corpus.py notes --out FILE [--factor F]  # the database's notes table, as COPY text

Sizes at factor 1 (the issue's corpus; efficiency.sh adds db/pgdump.sql, pgbench scale 40 plus
a `notes` table of ~63 MB of prose made by `notes`: a ~453 MB dump):
    db/NOTES.md, db/README.txt   two small text files beside the dump
    projects/   25,000 small source-like files (.py .md .json .yaml .txt, ~6 KB mean) in nested dirs
    tables/     246 MB of CSV: tables/events_mid.csv (exactly 5 MiB) and ~20 MB files
    blobs/      150 MB of random (incompressible) binaries
Day 2 (factor 1): 1% of the small files get one line replaced, 200 are added, 100 removed;
2,000 rows appended to each of up to three big CSVs; 4 KiB of rows inserted at a line break in
the middle of tables/events_mid.csv; one line appended to db/NOTES.md.
Every byte comes from fixed seeds (random.Random, not the OS): the same factor gives the same
bytes on every run with the same Python, so every tool sees identical data.
"""
import argparse
import os
import random
import sys

MiB = 1 << 20
SEED = 1717
MID_CSV = "tables/events_mid.csv"
MID_SIZE = 5 * MiB

IDENT = ("user", "session", "project", "deploy", "token", "config", "table", "row", "cache", "path",
         "name", "value", "result", "request", "response", "handler", "client", "server", "job",
         "queue", "channel", "package", "version", "owner", "state", "event", "record", "index",
         "buffer", "stream", "chunk", "snapshot", "report", "metric", "label", "node", "pod")
WORDS = ("the", "a", "of", "to", "and", "is", "for", "when", "with", "this", "that", "on", "not",
         "we", "it", "if", "be", "by", "from", "or", "as", "after", "before", "every", "only",
         "returns", "keeps", "reads", "writes", "checks", "skips", "needs", "makes", "uses",
         "backup", "restore", "cluster", "database", "secret", "notebook", "model", "data",
         "file", "line", "error", "retry", "timeout", "limit", "default", "option", "value")


def zipf_vocab(rng, n=5000):
    """n distinct pseudo-words (English-like letter frequencies) and Zipf cumulative weights:
    prose from them deflates ~3x, like real notes."""
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    cw, acc = [], 0.0
    for w in (12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4, 2.2, 2.0,
              2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1):
        acc += w
        cw.append(acc)
    words, seen = [], set()
    while len(words) < n:
        w = "".join(rng.choices(letters, cum_weights=cw, k=rng.randint(2, 11)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    weights, acc = [], 0.0
    for r in range(n):
        acc += 1.0 / (r + 1) ** 1.05
        weights.append(acc)
    return words, weights


def notes(out, factor):
    """Tab-separated rows (id, author, created, title, body) for `COPY notes FROM`, ~63 MB × factor."""
    rng = random.Random(SEED + 3)
    words, cw = zipf_vocab(random.Random(SEED + 4))
    target, n, i = int(63e6 * factor), 0, 0
    with open(out, "w") as f:
        while n < target:
            i += 1
            body = " ".join(rng.choices(words, cum_weights=cw, k=rng.randint(30, 300)))
            row = (f"{i}\tu{rng.randint(1, 400)}\t2024-{1 + i % 12:02d}-{1 + i % 28:02d} "
                   f"{i % 24:02d}:{i % 60:02d}:00+00\t{' '.join(rng.choices(words, cum_weights=cw, k=5))}\t{body}\n")
            f.write(row)
            n += len(row)
    print(f"notes: {i} rows, {n} bytes", file=sys.stderr)


def ident(rng):
    return "_".join(rng.choices(IDENT, k=rng.randint(1, 3)))


def prose(rng, n):
    return " ".join(rng.choices(WORDS, k=n))


def source_line(rng):
    """One line of Python/YAML/Markdown-like text."""
    k = rng.random()
    ind = "    " * rng.choice((0, 1, 1, 2, 2, 3))
    if k < 0.15:
        return f"{ind}# {prose(rng, rng.randint(4, 14))}"
    if k < 0.45:
        return f"{ind}{ident(rng)} = {ident(rng)}.{ident(rng)}({ident(rng)}, {rng.randint(0, 9999)})"
    if k < 0.55:
        return f"{ind}def {ident(rng)}({ident(rng)}, {ident(rng)}={rng.choice(('None', 'True', '0', '[]'))}):"
    if k < 0.65:
        return f"{ind}if {ident(rng)} {rng.choice(('==', '!=', '<', 'is', 'in'))} {ident(rng)}:"
    if k < 0.75:
        return f"{ind}return {ident(rng)}[{rng.randint(0, 64)}]"
    if k < 0.85:
        return f'{ind}"{ident(rng)}": "{prose(rng, rng.randint(1, 5))}",'
    if k < 0.93:
        return f"{ind}{ident(rng)}: {rng.choice(('true', 'false', rng.randint(1, 65535), ident(rng)))}"
    return ""


class Pool:
    """A pool of distinct-ish lines files draw from (files share vocabulary, as real code does)."""

    def __init__(self, rng, n=60000):
        self.lines = [source_line(rng) for _ in range(n)]

    def text(self, rng, size):
        out, n = [], 0
        while n < size:
            line = rng.choice(self.lines)
            if rng.random() < 0.2:   # some lines unique to the file
                line = source_line(rng)
            out.append(line)
            n += len(line) + 1
        return "\n".join(out) + "\n"


EXTS = (".py", ".py", ".py", ".md", ".json", ".yaml", ".txt")


def small_size(rng):
    return max(120, min(64 * 1024, int(rng.lognormvariate(8.25, 0.9))))   # median ~3.8 KB, mean ~6 KB


MODULES = ("src", "tests", "notebooks", "docs", "lib", "etl", "api", "config")


def small_path(rng, i, factor):
    """97 projects (× factor) × 8 modules × 4 subdirectories: ~8 files a directory."""
    n = max(2, round(97 * factor))
    return f"projects/p{i % n:02d}/{MODULES[(i // n) % 8]}/m{(i // (8 * n)) % 4}/f{i:05d}{rng.choice(EXTS)}"


def csv_header():
    return "id,ts,user,event,amount,country,session,note\n"


def csv_rows(rng, first_id, n):
    rows = []
    for i in range(first_id, first_id + n):
        rows.append(f"{i},2024-05-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}Z,"
                    f"u{rng.randint(1, 5000)},{rng.choice(IDENT)},{rng.randint(0, 10 ** 6) / 100:.2f},"
                    f"{rng.choice(('US', 'DE', 'FR', 'JP', 'BR', 'IN', 'GB', 'CA'))},"
                    f"{rng.getrandbits(48):012x},{prose(rng, rng.randint(0, 6))}\n")
    return "".join(rows)


def write(root, rel, data, mode="w"):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, mode) as f:
        f.write(data)


def write_csv(root, rel, rng, size, first_id=1):
    """A CSV of exactly `size` bytes (the last row padded in its note field); returns the next id."""
    parts, n, i = [csv_header()], len(csv_header()), first_id
    while n < size:
        block = csv_rows(rng, i, 2000)
        i += 2000
        parts.append(block)
        n += len(block)
    text = "".join(parts)
    cut = text.rfind("\n", 0, size - 40) + 1
    pad = size - cut - len(f"{i},\n")
    text = text[:cut] + f"{i}," + "x" * max(0, pad) + "\n"
    write(root, rel, text)
    return i + 1


def gen(root, factor):
    rng = random.Random(SEED)
    pool = Pool(random.Random(SEED + 1))
    write(root, "db/NOTES.md", "# Database dumps\n\n" + "\n".join(
        f"- {prose(rng, 12)}" for _ in range(40)) + "\n")
    write(root, "db/README.txt", pool.text(rng, 2500))
    n_small = max(50, round(25000 * factor))
    for i in range(n_small):
        write(root, small_path(rng, i, factor), pool.text(rng, small_size(rng)))
    write_csv(root, MID_CSV, rng, MID_SIZE)
    rest = max(MiB, int(246e6 * factor) - MID_SIZE)
    n_csv = max(1, round(rest / 20e6))
    for k in range(n_csv):
        write_csv(root, f"tables/big{k:02d}.csv", rng, rest // n_csv, first_id=1 + k * 10 ** 7)
    bin_total = max(MiB, int(150e6 * factor))
    n_bin = max(1, round(bin_total / 25e6))
    for k in range(n_bin):
        write(root, f"blobs/artifact{k:02d}.bin", rng.randbytes(bin_total // n_bin), "wb")
    print(f"day 1: {n_small} small files, {n_csv + 1} CSVs, {n_bin} binaries", file=sys.stderr)


def day2(root, factor):
    rng = random.Random(SEED + 2)
    pool = Pool(random.Random(SEED + 1))
    small = sorted(os.path.relpath(os.path.join(d, f), root)
                   for d, _, fs in os.walk(os.path.join(root, "projects")) for f in fs)
    n_edit = max(1, round(len(small) * 0.01))
    n_add = max(1, round(200 * factor))
    n_del = max(1, round(100 * factor))
    picked = rng.sample(small, n_edit + n_del)
    for rel in picked[:n_edit]:   # one line replaced, somewhere in the file
        p = os.path.join(root, rel)
        with open(p) as f:
            lines = f.read().split("\n")
        k = rng.randrange(max(1, len(lines) - 1))
        lines[k] = source_line(rng) + f"  # day 2 {rng.getrandbits(32):08x}"
        with open(p, "w") as f:
            f.write("\n".join(lines))
    for rel in picked[n_edit:]:
        os.remove(os.path.join(root, rel))
    for i in range(n_add):
        write(root, small_path(rng, 900000 + i, factor), pool.text(rng, small_size(rng)))
    # CSV appends: rows at the end of up to three big CSVs.
    bigs = sorted(f for f in os.listdir(os.path.join(root, "tables")) if f.startswith("big"))[:3]
    appended = 0
    for k, name in enumerate(bigs):
        rows = csv_rows(rng, 5 * 10 ** 8 + k * 10 ** 6, 2000)
        write(root, f"tables/{name}", rows, "a")
        appended += len(rows)
    # 4 KiB (exactly 4096 bytes of whole rows) inserted at the line break nearest the middle.
    p = os.path.join(root, MID_CSV)
    with open(p, "rb") as f:
        data = f.read()
    mid = data.index(b"\n", len(data) // 2) + 1
    ins = csv_rows(rng, 9 * 10 ** 8, 60).encode()
    ins = ins[:ins.rfind(b"\n", 0, 4096 - 30) + 1]
    ins += b"999999999," + b"y" * (4096 - len(ins) - 11) + b"\n"
    assert len(ins) == 4096
    with open(p, "wb") as f:
        f.write(data[:mid] + ins + data[mid:])
    write(root, "db/NOTES.md", f"- day 2: {prose(rng, 10)}\n", "a")
    print(f"{n_edit} small files edited (one line), {n_add} added, {n_del} removed; "
          f"{appended} bytes of rows appended to {len(bigs)} CSVs; 4096 bytes inserted mid-{MID_CSV}; "
          f"one line appended to db/NOTES.md")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("gen", "day2", "notes"))
    ap.add_argument("--root")
    ap.add_argument("--out")
    ap.add_argument("--factor", type=float, default=1.0)
    a = ap.parse_args()
    if not a.factor > 0:
        ap.error("--factor must be > 0")
    if a.step == "notes":
        if not a.out:
            ap.error("notes needs --out FILE")
        notes(a.out, a.factor)
    elif not a.root:
        ap.error(f"{a.step} needs --root DIR")
    else:
        (gen if a.step == "gen" else day2)(a.root, a.factor)


if __name__ == "__main__":
    main()
