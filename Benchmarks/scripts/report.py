#!/usr/bin/env python3
"""Tables for Benchmarks/compare.sh.

    report.py table   --csv results.csv --meta meta.env --base accord --out results.md
    report.py compare --a scale-1/results.csv --b scale-2/results.csv --base accord --out growth.md
    report.py accord-added < `accord snapshots list -d REPO --json`   # addedBytes of the newest snapshot

results.csv columns: scale,step,tool,wall_s,user_s,sys_s,cpu_s,maxrss_kb,repo_bytes,exit,status,reported_added
"""
import argparse
import csv
import json
import sys

MAIN_STEPS = ["initial", "nochange", "change", "restore"]
STEP_LABEL = {
    "initial": "initial backup",
    "nochange": "no-change backup",
    "change": "after-change backup (day 2)",
    "restore": "full restore",
}
MiB = 1 << 20


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def load(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def load_meta(path):
    meta = {}
    if path:
        try:
            with open(path) as f:
                for line in f:
                    if "=" in line:
                        k, v = line.rstrip("\n").split("=", 1)
                        meta[k] = v
        except FileNotFoundError:
            pass
    return meta


def ok(r):
    return r is not None and r["status"].startswith("ok")


def index(rows):
    return {(r["step"], r["tool"]): r for r in rows}


def tools_in(rows, main=True):
    seen = []
    for r in rows:
        is_main = r["step"] in MAIN_STEPS
        if is_main == main and r["tool"] not in seen:
            seen.append(r["tool"])
    return seen


def f_s(v):
    return "–" if v is None else (f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 10 else f"{v:.1f}")


def f_mib(v, kb=False):
    if v is None:
        return "–"
    m = v / 1024 if kb else v / MiB
    return f"{m:.1f}" if m < 100 else f"{m:.0f}"


def f_bytes(v):
    if v is None:
        return "–"
    for unit, div in (("MiB", MiB), ("KiB", 1024)):
        if abs(v) >= div:
            return f"{v / div:.1f} {unit}"
    return f"{v:.0f} B"


def f_ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def metric(r, key):
    if not ok(r):
        return None
    return num(r[key])


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


METRICS = [("wall_s", "wall s", f_s), ("cpu_s", "CPU s (user+sys)", f_s),
           ("maxrss_kb", "peak RSS MiB", lambda v: f_mib(v, kb=True)), ("repo_bytes", "repo MiB", f_mib)]


def emit(lines, path):
    """Prints the report and, when --out names a file, writes it there too."""
    text = "\n".join(lines)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
    print(text)


def cell(r, show):
    """A table cell: `show(r)` for a good row, else its status, or "–" when there is none."""
    if r is None:
        return "–"
    return show(r) if ok(r) else r["status"]


def table(a):
    rows = load(a.csv)
    meta = load_meta(a.meta)
    idx = index(rows)
    tools = tools_in(rows, main=True)
    base = a.base if a.base in tools else None
    # Ratios against the other tools, and against the same binary on a plain
    # repository (`-plain`) and the binary before a change (`-before`).
    others = [t for t in tools if t != base and (not t.startswith(base or "\0") or t in (f"{base}-plain", f"{base}-before"))] if base else []
    out = []
    scale = rows[0]["scale"] if rows else "?"
    out.append(f"# Accord vs restic vs borg — scale {scale}\n")
    if meta:
        out.append("| corpus / setup | value |\n|---|---|")
        for k, v in meta.items():
            out.append(f"| {k} | {v} |")
        out.append("")

    # 1. the combined table
    out.append("## All steps (cell = wall s / CPU s / peak RSS MiB / repo MiB after the step)\n")
    header = ["step"] + tools + [f"{base}/{o} (wall/CPU/RSS/repo)" for o in others]
    body = []
    for step in MAIN_STEPS:
        line = [STEP_LABEL[step]]
        for t in tools:
            line.append(cell(idx.get((step, t)), lambda r: " / ".join(fmt(metric(r, k)) for k, _, fmt in METRICS)))
        for o in others:
            rb, ro = idx.get((step, base)), idx.get((step, o))
            line.append(" / ".join(f_ratio(metric(rb, k), metric(ro, k)) for k, _, _ in METRICS))
        body.append(line)
    out.append(md_table(header, body))
    out.append("")

    # 2. one table per metric
    for key, label, fmt in METRICS:
        out.append(f"### {label}\n")
        header = ["step"] + tools + [f"{base}/{o}" for o in others]
        body = []
        for step in MAIN_STEPS:
            line = [STEP_LABEL[step]]
            for t in tools:
                line.append(cell(idx.get((step, t)), lambda r: fmt(metric(r, key))))
            for o in others:
                line.append(f_ratio(metric(idx.get((step, base)), key), metric(idx.get((step, o)), key)))
            body.append(line)
        out.append(md_table(header, body))
        out.append("")

    # 3. restore verification
    out.append("### restore verification (outside the timing)\n")
    out.append(md_table(["tool", "status"], [[t, idx[("restore", t)]["status"]] for t in tools
                                              if ("restore", t) in idx]))
    out.append("")

    # 4. day-2 growth
    out.append("## Day-2 growth (repository bytes added by the after-change backup)\n")
    body = []
    for t in tools:
        i, n, c = (idx.get((s, t)) for s in ("initial", "nochange", "change"))
        rb = lambda r: metric(r, "repo_bytes")
        g0 = None if rb(n) is None or rb(i) is None else rb(n) - rb(i)
        g1 = None if rb(c) is None or rb(n) is None else rb(c) - rb(n)
        rep = c["reported_added"] if c and c.get("reported_added") else "–"
        body.append([t, "whole tree", f_bytes(g0), f_bytes(g1), rep, "–"])
    dump1, dump2 = num(meta.get("dump day-1 bytes")), num(meta.get("dump day-2 bytes"))
    order = {"dumpfile": 0, "cmd": 1, "stdin": 2}
    dump_tools = sorted(tools_in(rows, main=False), key=lambda t: (
        tools.index(t.partition("+")[0]) if t.partition("+")[0] in tools else 99, order.get(t.partition("+")[2], 9)))
    for t in dump_tools:
        d1, d2 = idx.get(("dump-day1", t)), idx.get(("dump-day2", t))
        tool, _, how = t.partition("+")
        how = {"dumpfile": "dump as a file", "cmd": "dump via --command (dump profile)",
               "stdin": "dump via --stdin"}.get(how, how)
        if ok(d1) and ok(d2):
            g = num(d2["repo_bytes"]) - num(d1["repo_bytes"])
            pct = f"{100 * g / dump2:.1f}%" if dump2 else "–"
            body.append([tool, how, "–", f_bytes(g), d2.get("reported_added") or "–",
                         f"{pct} (day-1 repo {f_mib(num(d1['repo_bytes']))} MiB; day 2 {f_s(num(d2['wall_s']))} s,"
                         f" {f_s(num(d2['cpu_s']))} CPU s, {f_mib(num(d2['maxrss_kb']), kb=True)} MiB RSS)"])
        else:
            body.append([tool, how, "–", (d2 or d1 or {"status": "–"})["status"], "–", "–"])
    out.append(md_table(["tool", "what", "no-change growth", "day-2 growth",
                         "accord-reported addedBytes", "growth / day-2 dump size"], body))
    if dump1:
        out.append(f"\nDump size: day 1 {f_mib(dump1)} MiB, day 2 {f_mib(dump2)} MiB.")
    out.append("")
    emit(out, a.out)


def compare(a):
    ra, rb = load(a.a), load(a.b)
    ia, ib = index(ra), index(rb)
    sa, sb = (ra[0]["scale"] if ra else "?"), (rb[0]["scale"] if rb else "?")
    tools = [t for t in tools_in(ra) if t in tools_in(rb)
             and any(ok(ia.get((s, t))) for s in MAIN_STEPS)]
    out = [f"# Growth from scale {sa} to scale {sb}\n",
           f"cell = value at scale {sa} → scale {sb} (×ratio)\n"]
    for key, label, fmt in METRICS:
        out.append(f"### {label}\n")
        body = []
        for step in MAIN_STEPS:
            line = [STEP_LABEL[step]]
            for t in tools:
                x, y = metric(ia.get((step, t)), key), metric(ib.get((step, t)), key)
                line.append(f"{fmt(x)} → {fmt(y)} (×{f_ratio(y, x)})")
            body.append(line)
        out.append(md_table(["step"] + tools, body))
        out.append("")
    emit(out, a.out)


def accord_added(_a):
    try:
        snaps = json.load(sys.stdin)
        if isinstance(snaps, dict):
            snaps = snaps.get("snapshots", [])
        snap = max(snaps, key=lambda s: s.get("time", ""))
        print(int(snap["summary"]["addedBytes"]))
    except Exception:
        print("")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table")
    t.add_argument("--csv", required=True)
    t.add_argument("--meta")
    t.add_argument("--base", default="accord")
    t.add_argument("--out")
    c = sub.add_parser("compare")
    c.add_argument("--a", required=True)
    c.add_argument("--b", required=True)
    c.add_argument("--base", default="accord")
    c.add_argument("--out")
    sub.add_parser("accord-added")
    a = ap.parse_args()
    {"table": table, "compare": compare, "accord-added": accord_added}[a.cmd](a)


if __name__ == "__main__":
    main()
