#!/usr/bin/env python3
"""Helpers for Benchmarks/sync-bench.sh.

    sync_report.py relay COUNTFILE CMD [ARG...]
        Runs CMD with its stdin/stdout relayed through this process and, when CMD
        exits, writes "in=<bytes read from our stdin> out=<bytes written to our stdout>"
        to COUNTFILE. Used on the server side of ssh (`sudo -n ... relay FILE accord`
        before ` serve --repo DIR`, or as rsync's --rsync-path) to count what really
        crossed the ssh channel, independently of what the client reports.
    sync_report.py accord-json FILE
        Prints "blobs payload sent received seconds snapshots" from `accord sync --json`.
    sync_report.py rsync-stats FILE
        Prints "sent received literal matched" parsed from `rsync --stats` output.
    sync_report.py table --csv CSV --meta META --out OUT
        Writes the markdown report (also printed on stdout).
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import threading


# ---------------------------------------------------------------- relay

def relay(countfile, argv):
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    counts = [0, 0]

    def pump(src, dst, i):
        try:
            while True:
                b = os.read(src, 1 << 20)
                if not b:
                    break
                view = memoryview(b)
                while view:
                    n = os.write(dst, view)
                    view = view[n:]
                counts[i] += len(b)
        except (BrokenPipeError, OSError):
            pass
        finally:
            try:
                os.close(dst)
            except OSError:
                pass

    t_in = threading.Thread(target=pump, args=(0, p.stdin.fileno(), 0), daemon=True)
    t_out = threading.Thread(target=pump, args=(p.stdout.fileno(), 1, 1), daemon=True)
    t_in.start()
    t_out.start()
    rc = p.wait()
    t_out.join()
    t_in.join(timeout=2)   # the client may keep its end open until we exit
    with open(countfile, "w") as f:
        f.write(f"in={counts[0]} out={counts[1]} rc={rc}\n")
    sys.stderr.flush()
    os._exit(rc if rc >= 0 else 128 - rc)


# ---------------------------------------------------------------- parsers

def accord_json(path):
    with open(path) as f:
        text = f.read()
    # the JSON object is the last {...} in the output
    start = text.rfind("{")
    while start >= 0:
        try:
            o = json.loads(text[start:])
            break
        except ValueError:
            start = text.rfind("{", 0, start)
    else:
        raise SystemExit(f"no JSON object in {path}")
    print(o.get("blobs", ""), o.get("payloadBytes", ""), o.get("wireBytesSent", ""),
          o.get("wireBytesReceived", ""), o.get("seconds", ""), o.get("snapshots", ""))


def rsync_stats(path):
    with open(path) as f:
        text = f.read()

    def num(label):
        m = re.search(r"^" + re.escape(label) + r":\s*([\d,.]+)", text, re.M)
        return m.group(1).replace(",", "").split(".")[0] if m else ""

    print(num("Total bytes sent"), num("Total bytes received"), num("Literal data"), num("Matched data"))


# ---------------------------------------------------------------- report

def human(n):
    if n is None:
        return "–"
    n = float(n)
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"]:
        if abs(n) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.3g} {unit}" if n < 100 else f"{n:.0f} {unit}"
        n /= 1024


def to_int(s):
    try:
        return int(s)
    except (TypeError, ValueError):
        return None


def to_float(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def ratio(a, b):
    if a is None or not b:
        return None
    return a / b


def fmt_ratio(r):
    if r is None:
        return "–"
    return f"{r:.4f}" if r < 0.1 else f"{r:.3f}"


def table(csv_path, meta_path, out_path):
    rows = {}
    with open(csv_path) as f:
        for r in csv.DictReader(f):
            rows[(r["step"], r["tool"])] = r
    meta = []
    if meta_path and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = [l.rstrip("\n") for l in f if l.strip()]

    def wire(step, tool):
        r = rows.get((step, tool))
        if not r or r["status"] != "ok":
            return None
        s, v = to_int(r["sent"]), to_int(r["received"])
        return None if s is None or v is None else s + v

    def get(step, tool, key, conv=to_int):
        r = rows.get((step, tool))
        return conv(r[key]) if r and r["status"] == "ok" else None

    steps = ["initial", "incremental"]
    out = []
    out.append("# accord sync vs rsync over ssh (loopback sshd)\n")
    for m in meta:
        k, _, v = m.partition("=")
        out.append(f"- **{k}**: {v}" if v else f"- {m}")
    out.append("")
    out.append("Wire bytes are application bytes through the ssh channel, both directions "
               "(accord: `wireBytesSent + wireBytesReceived` of `--json`; rsync: "
               "`Total bytes sent + received` of `--stats`), before ssh encryption. "
               "Payload = stored (compressed) bytes of the blobs sent. "
               "Overhead = (wire − payload) / payload. Seconds = wall time of the client command, "
               "ssh connection setup included.\n")
    hdr = ["step", "accord wire", "accord payload", "overhead %", "accord s",
           "rsync-tree wire", "rsync-tree s", "rsync-tar.gz wire", "rsync-tar.gz s",
           "accord / rsync-tree", "accord / rsync-tar.gz"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    results = {}
    for st in steps:
        aw, ap = wire(st, "accord"), get(st, "accord", "payload")
        tw, gw = wire(st, "rsync-tree"), wire(st, "rsync-targz")
        ov = None if aw is None or not ap else (aw - ap) * 100.0 / ap
        results[st] = dict(aw=aw, ap=ap, ov=ov, tw=tw, gw=gw)
        def secs(tool):
            v = get(st, tool, "wall_s", to_float)
            return "–" if v is None else f"{v:.2f}"
        out.append("| " + " | ".join([
            st, human(aw), human(ap), "–" if ov is None else f"{ov:.3f}", secs("accord"),
            human(tw), secs("rsync-tree"), human(gw), secs("rsync-targz"),
            fmt_ratio(ratio(aw, tw)), fmt_ratio(ratio(aw, gw))]) + " |")
    out.append("")

    # exact numbers
    out.append("Exact bytes (sent + received = wire):\n")
    out.append("| step | tool | sent | received | wire | payload / literal | server-side relay in + out | relay − wire | wall s | status |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for st in steps:
        for tool in ["accord", "rsync-tree", "rsync-targz", "rsync-tree-z"]:
            r = rows.get((st, tool))
            if not r:
                continue
            s, v = to_int(r["sent"]), to_int(r["received"])
            w = None if s is None or v is None else s + v
            ri, ro = to_int(r.get("relay_in")), to_int(r.get("relay_out"))
            rel = None if ri is None or ro is None else ri + ro
            pl = r["payload"] if tool == "accord" else r.get("literal", "")
            diff = "–" if rel is None or w is None else f"{rel - w:+d}"
            out.append(f"| {st} | {tool} | {s if s is not None else '–'} | {v if v is not None else '–'} | "
                       f"{w if w is not None else '–'} | {pl or '–'} | {rel if rel is not None else '–'} | {diff} | "
                       f"{r['wall_s'] or '–'} | {r['status']} |")
    out.append("")

    # where accord's overhead goes
    out.append("accord per blob (overhead = have id + blob frame header + snapshot JSON + session frames):\n")
    out.append("| step | blobs | avg stored blob | wire − payload | overhead per blob | accord's own seconds |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for st in steps:
        n, ap, aw = get(st, "accord", "blobs"), results.get(st, {}).get("ap"), results.get(st, {}).get("aw")
        own = get(st, "accord", "own_s", to_float)
        if n and ap is not None and aw is not None:
            out.append(f"| {st} | {n} | {ap / n:.0f} B | {aw - ap} B | {(aw - ap) / n:.1f} B | "
                       f"{'–' if own is None else f'{own:.2f}'} |")
    out.append("")

    # goals
    inc = results.get("incremental", {})
    goals = []
    r1 = ratio(inc.get("aw"), inc.get("tw"))
    r2 = ratio(inc.get("aw"), inc.get("gw"))
    goals.append(("incremental accord wire < 0.5 × rsync plain tree", r1, r1 is not None and r1 < 0.5, fmt_ratio(r1)))
    goals.append(("incremental accord wire < 0.05 × rsync tar.gz", r2, r2 is not None and r2 < 0.05, fmt_ratio(r2)))
    for st in steps:
        ov = results.get(st, {}).get("ov")
        goals.append((f"{st} protocol overhead < 2 %", ov, ov is not None and ov < 2.0,
                      "–" if ov is None else f"{ov:.3f} %"))
    out.append("Goals:\n")
    out.append("| goal | measured | result |")
    out.append("|---|---:|---|")
    for name, _, ok, shown in goals:
        out.append(f"| {name} | {shown} | {'PASS' if ok else 'FAIL'} |")
    out.append("")

    # context: backups, tarballs
    if any(k[1] == "rsync-tree-z" for k in rows):
        out.append("Against `rsync -az` of the tree (compressed, RSYNC_Z=1): " + "; ".join(
            f"{st} accord / rsync-tree-z = {fmt_ratio(ratio(results.get(st, {}).get('aw'), wire(st, 'rsync-tree-z')))}"
            for st in steps) + "\n")

    extra = [(k, r) for k, r in rows.items() if k[1] not in ("accord", "rsync-tree", "rsync-targz", "rsync-tree-z")]
    if extra:
        out.append("Local steps (not on the wire; for context):\n")
        out.append("| step | what | wall s | bytes | note |")
        out.append("|---|---|---:|---:|---|")
        for (st, tool), r in extra:
            b = to_int(r.get("payload"))
            out.append(f"| {st} | {tool} | {r['wall_s'] or '–'} | {human(b) if b is not None else '–'} | {r.get('note', '')} |")
        out.append("")

    text = "\n".join(out) + "\n"
    with open(out_path, "w") as f:
        f.write(text)
    sys.stdout.write(text)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "relay":
        if len(sys.argv) < 4:
            raise SystemExit("usage: sync_report.py relay COUNTFILE CMD [ARG...]")
        relay(sys.argv[2], sys.argv[3:])
        return
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("accord-json")
    a.add_argument("file")
    r = sub.add_parser("rsync-stats")
    r.add_argument("file")
    t = sub.add_parser("table")
    t.add_argument("--csv", required=True)
    t.add_argument("--meta")
    t.add_argument("--out", required=True)
    o = ap.parse_args()
    if o.cmd == "accord-json":
        accord_json(o.file)
    elif o.cmd == "rsync-stats":
        rsync_stats(o.file)
    else:
        table(o.csv, o.meta, o.out)


if __name__ == "__main__":
    main()
