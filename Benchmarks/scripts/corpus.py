#!/usr/bin/env python3
"""Deterministic AE5-like benchmark corpus (everything except the database dump).

    corpus.py gen  --root DIR --scale S   # day 1: small files, CSVs, binaries, YAML
    corpus.py day2 --root DIR --scale S   # day 2: edit/add/delete ~1% of the small files,
                                          # insert rows in the middle of one CSV, edit one YAML

Sizes at scale 1 (the pgbench dump, made by compare.sh, adds ~300 MB):
    projects/   ~25,000 small text/JSON/notebook/code files in nested dirs (~200 MB)
    tables/     4 medium CSVs (~320 MB)
    blobs/      5 incompressible binaries (~150 MB)
    config/     8 YAML files, 2 symlinks and an empty dir
Everything comes from fixed seeds: the same scale gives the same bytes on every run
(with the same Python version), so tools are compared on identical data.
"""
import argparse
import base64
import bisect
import itertools
import json
import os
import random
import shutil
import sys

MiB = 1 << 20
SEED = 20240501


# ---------------------------------------------------------------- vocabulary

def make_vocab(rng, n=6000):
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    lw = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4,
          2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1]
    cw = list(itertools.accumulate(lw))
    seen, out = set(), []
    while len(out) < n:
        k = min(12, max(2, int(rng.expovariate(1 / 5.5)) + 1))
        w = "".join(rng.choices(letters, cum_weights=cw, k=k))
        if w not in seen:
            seen.add(w)
            out.append(w)
    # Zipf-like weights: realistic text compresses ~2.5-3.5x with deflate
    weights = list(itertools.accumulate(1.0 / (r + 1) ** 1.05 for r in range(n)))
    return out, weights


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.vocab, self.cw = make_vocab(random.Random(SEED))

    def words(self, k):
        return self.rng.choices(self.vocab, cum_weights=self.cw, k=k)

    def prose(self, n):
        k = n // 6 + 12
        ws = self.words(k)
        lines = []
        i = 0
        while i < k:
            step = self.rng.randint(6, 16)
            line = " ".join(ws[i:i + step])
            lines.append(line[0].upper() + line[1:] + ".")
            i += step
        return ("\n".join(lines))[:n] + "\n"

    def ident(self):
        a, b = self.words(2)
        return f"{a}_{b}"

    def code(self, n):
        out, size = [], 0
        out.append(f"\"\"\"{self.prose(120).strip()}\"\"\"\nimport os\nimport json\nimport numpy as np\n\n")
        while size < n:
            fn = self.ident()
            args = ", ".join(self.ident() for _ in range(self.rng.randint(0, 4)))
            body = []
            for _ in range(self.rng.randint(2, 10)):
                v = self.ident()
                kind = self.rng.random()
                if kind < 0.4:
                    body.append(f"    {v} = {self.ident()}({self.ident()}, {self.rng.randint(0, 999)})")
                elif kind < 0.7:
                    body.append(f"    if {v} is not None and len({v}) > {self.rng.randint(1, 64)}:\n"
                                f"        return {v}[{self.rng.randint(0, 9)}]")
                else:
                    body.append(f"    # {' '.join(self.words(self.rng.randint(3, 10)))}")
            s = f"def {fn}({args}):\n" + "\n".join(body) + f"\n    return {self.ident()}\n\n\n"
            out.append(s)
            size += len(s)
        return "".join(out)

    def value(self, depth=0):
        r = self.rng.random()
        if depth < 3 and r < 0.15:
            return {w: self.value(depth + 1) for w in self.words(self.rng.randint(1, 6))}
        if depth < 3 and r < 0.25:
            return [self.value(depth + 1) for _ in range(self.rng.randint(1, 6))]
        if r < 0.45:
            return self.rng.randint(-10000, 1000000)
        if r < 0.6:
            return round(self.rng.uniform(-1000, 1000), 4)
        if r < 0.65:
            return self.rng.random() < 0.5
        return " ".join(self.words(self.rng.randint(1, 8)))

    def json_doc(self, n):
        doc, size = {"id": self.rng.getrandbits(64), "kind": self.ident(), "items": []}, 0
        while size < n:
            item = {w: self.value(1) for w in self.words(self.rng.randint(3, 9))}
            doc["items"].append(item)
            size += len(json.dumps(item)) + 8
        return json.dumps(doc, indent=2) + "\n"

    def notebook(self, n):
        cells, size = [], 0
        while size < n:
            if self.rng.random() < 0.5:
                src = self.code(self.rng.randint(200, 1500))
                outputs = []
                if self.rng.random() < 0.15:   # an embedded plot: incompressible base64
                    png = base64.b64encode(self.rng.randbytes(self.rng.randint(2000, 20000))).decode()
                    outputs.append({"output_type": "display_data", "data": {"image/png": png}, "metadata": {}})
                cell = {"cell_type": "code", "execution_count": self.rng.randint(1, 200),
                        "metadata": {}, "outputs": outputs, "source": src.splitlines(True)}
            else:
                cell = {"cell_type": "markdown", "metadata": {},
                        "source": self.prose(self.rng.randint(100, 1200)).splitlines(True)}
            cells.append(cell)
            size += len(json.dumps(cell))
        nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
              "nbformat": 4, "nbformat_minor": 5}
        return json.dumps(nb, indent=1) + "\n"

    def yaml_doc(self, n):
        out, size = [], 0
        while size < n:
            name = self.ident().replace("_", "-")
            s = (f"---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n"
                 f"  namespace: anaconda-enterprise\n  labels:\n    app: {name}\n    tier: {self.words(1)[0]}\n"
                 f"spec:\n  replicas: {self.rng.randint(1, 5)}\n  template:\n    spec:\n      containers:\n"
                 f"      - name: {name}\n        image: registry.local/{name}:{self.rng.randint(1, 9)}."
                 f"{self.rng.randint(0, 30)}.{self.rng.randint(0, 99)}\n        env:\n")
            for _ in range(self.rng.randint(2, 12)):
                s += f"        - name: {self.ident().upper()}\n          value: \"{' '.join(self.words(self.rng.randint(1, 4)))}\"\n"
            s += (f"        resources:\n          limits:\n            cpu: \"{self.rng.randint(1, 16)}\"\n"
                  f"            memory: {self.rng.randint(1, 64)}Gi\n")
            out.append(s)
            size += len(s)
        return "".join(out)


# ---------------------------------------------------------------- helpers

def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(data, (bytes, bytearray)) else "w"
    with open(path, mode) as f:
        f.write(data)


def small_size(rng):
    # log-normal around ~5 KB, capped: mean ~8 KB
    return int(min(96 * 1024, max(120, rng.lognormvariate(8.5, 1.1))))


def small_file(g, path):
    ext = os.path.splitext(path)[1]
    n = small_size(g.rng)
    if ext == ".json":
        return g.json_doc(n)
    if ext == ".ipynb":
        return g.notebook(n)
    if ext == ".py":
        return g.code(n)
    return g.prose(n)


EXTS = [".json", ".py", ".md", ".txt", ".ipynb", ".json", ".py", ".txt"]
SUBDIRS = ["src", "src/lib", "src/lib/util", "notebooks", "data", "data/raw", "conf", "docs", "tests"]

CSV_HEADER = "id,ts,user,region,service,latency_ms,bytes,status,comment\n"
REGIONS = ["us-east-1", "us-west-2", "eu-central-1", "eu-west-1", "ap-south-1", "ap-northeast-1"]
STATUS = ["ok", "ok", "ok", "ok", "ok", "ok", "retry", "error", "timeout"]


def csv_rows(g, start, count, ts0):
    rng = g.rng
    users = [g.ident() for _ in range(500)]
    services = [g.ident() for _ in range(40)]
    rows = []
    ts = ts0
    for i in range(start, start + count):
        ts += rng.randint(0, 3000)
        comment = " ".join(g.words(rng.randint(0, 5))) if rng.random() < 0.3 else ""
        rows.append(f"{i},{ts // 1000}.{ts % 1000:03d},{users[rng.randrange(500)]},"
                    f"{REGIONS[rng.randrange(6)]},{services[rng.randrange(40)]},"
                    f"{rng.lognormvariate(3, 1):.3f},{rng.randrange(1 << 20)},"
                    f"{STATUS[rng.randrange(9)]},{comment}\n")
    return "".join(rows), ts


def scaled(n, scale, minimum=1):
    return max(minimum, int(round(n * scale)))


# ---------------------------------------------------------------- day 1

def gen(root, scale):
    g = Gen(SEED)
    # 1. small files: ~25,000 at scale 1, users/projects/subdirs
    nfiles = scaled(25000, scale, 50)
    nproj = max(5, nfiles // 100)
    made = 0
    for p in range(nproj):
        user = f"user{p % max(1, nproj // 4):03d}"
        proj = f"{user}/project-{p:04d}-{g.words(1)[0]}"
        k = nfiles // nproj + (1 if p < nfiles % nproj else 0)
        for i in range(k):
            sub = SUBDIRS[g.rng.randrange(len(SUBDIRS))]
            ext = EXTS[g.rng.randrange(len(EXTS))]
            path = os.path.join(root, "projects", proj, sub, f"{g.ident()}-{i:03d}{ext}")
            write(path, small_file(g, path))
            made += 1
    # 2. medium CSVs: 40, 60, 100, 120 MB at scale 1
    for idx, mb in enumerate([40, 60, 100, 120]):
        target = int(mb * MiB * scale)
        path = os.path.join(root, "tables", f"metrics-{idx}.csv")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(CSV_HEADER)
            size, row, ts = len(CSV_HEADER), 1, 1700000000000 + idx * 10**9
            while size < target:
                chunk, ts = csv_rows(g, row, 5000, ts)
                f.write(chunk)
                size += len(chunk)
                row += 5000
    # 3. incompressible binaries: 150 MB at scale 1 (seeded PRNG, reproducible)
    brng = random.Random(SEED + 3)
    names = ["model-weights.bin", "env-layer.tar.gz", "dataset.parquet", "images.zip", "conda-pkgs.tar.bz2"]
    for frac, name in zip([0.1, 0.15, 0.2, 0.25, 0.3], names):
        left = int(150 * MiB * scale * frac)
        path = os.path.join(root, "blobs", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            while left > 0:
                n = min(left, 4 * MiB)
                f.write(brng.randbytes(n))
                left -= n
    # 4. YAML + a couple of symlinks and an empty directory
    for i in range(8):
        write(os.path.join(root, "config", f"deploy-{i}.yaml"), g.yaml_doc(g.rng.randint(8000, 60000)))
    os.makedirs(os.path.join(root, "config", "empty.d"), exist_ok=True)
    for name, tgt in [("current.yaml", "deploy-0.yaml"), ("dangling", "../nowhere")]:
        p = os.path.join(root, "config", name)
        if not os.path.lexists(p):
            os.symlink(tgt, p)
    print(f"corpus: {made} small files, 4 CSVs, 5 binaries, 8 YAML under {root}", file=sys.stderr)


# ---------------------------------------------------------------- day 2

def day2(root, scale):
    g = Gen(SEED + 2)
    rng = g.rng
    files = []
    for d, dirs, fs in os.walk(os.path.join(root, "projects")):
        dirs.sort()
        for f in sorted(fs):
            files.append(os.path.join(d, f))
    files.sort()
    n = len(files)
    n_edit, n_del, n_add = max(1, round(n * 0.006)), max(1, round(n * 0.002)), max(1, round(n * 0.002))
    picked = rng.sample(files, n_edit + n_del)
    edits, dels = picked[:n_edit], picked[n_edit:]
    for path in edits:
        ext = os.path.splitext(path)[1]
        if ext in (".json", ".ipynb"):
            with open(path) as f:
                doc = json.load(f)
            doc["edited"] = {"by": g.ident(), "note": g.prose(200).strip()}
            if ext == ".json" and doc.get("items"):
                doc["items"][rng.randrange(len(doc["items"]))][g.words(1)[0]] = g.value(1)
            indent = 1 if ext == ".ipynb" else 2
            write(path, json.dumps(doc, indent=indent) + "\n")
        else:
            with open(path) as f:
                lines = f.read().splitlines(True)
            at = rng.randrange(len(lines) + 1)
            lines[at:at + 1] = [g.prose(rng.randint(40, 400))]
            lines.append(g.prose(80))
            write(path, "".join(lines))
    for path in dels:
        os.unlink(path)
    dirs = sorted({os.path.dirname(p) for p in files})
    for i in range(n_add):
        d = dirs[rng.randrange(len(dirs))] if i % 4 else os.path.join(root, "projects", "user000", "project-new", "src")
        ext = EXTS[rng.randrange(len(EXTS))]
        path = os.path.join(d, f"new-{g.ident()}-{i:03d}{ext}")
        write(path, small_file(g, path))
    # insert ~1000 rows (~80 KB) in the middle of one medium CSV, at a line boundary
    path = os.path.join(root, "tables", "metrics-1.csv")
    size = os.path.getsize(path)
    tmp = path + ".day2.tmp"
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        head = src.read(size // 2)
        head += src.readline()
        dst.write(head)
        rows, _ = csv_rows(g, 10**9, 1000, 1800000000000)
        dst.write(rows.encode())
        shutil.copyfileobj(src, dst, 4 * MiB)
    os.replace(tmp, path)
    # one YAML edit
    yp = os.path.join(root, "config", "deploy-3.yaml")
    with open(yp) as f:
        y = f.read()
    write(yp, y.replace("replicas: ", "replicas: 1", 1))
    print(f"day2: edited {n_edit}, deleted {n_del}, added {n_add} of {n} small files; "
          f"+1000 rows in the middle of tables/metrics-1.csv; edited config/deploy-3.yaml", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["gen", "day2"])
    ap.add_argument("--root", required=True)
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    (gen if a.cmd == "gen" else day2)(a.root, a.scale)


if __name__ == "__main__":
    main()
