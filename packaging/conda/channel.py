"""The conda side of `make conda` (packaging/conda/build.sh) and of its test.

  channel.py metadata PREFIX --version V --subdir S --glibc X.Y   writes PREFIX/info/{index,paths,about}.json and info/files
  channel.py index CHANNEL                                        indexes a local channel (py-rattler)
  channel.py install CHANNEL PREFIX [SPEC]                        solves SPEC (default accord) from CHANNEL alone and
                                                                  installs it into the new PREFIX, offline (py-rattler)

conda-package-handling's `cph create` then writes the archive from PREFIX. The metadata is what
conda and rattler read: index.json (name, version, build, depends with `__glibc >=FLOOR`,
subdir, timestamp), paths.json (each file's sha256 and size, hard-linked on install).
"""
import argparse
import asyncio
import hashlib
import json
import os
import sys
import time


def metadata(prefix, version, subdir, glibc):
    paths = []
    for top, dirs, files in os.walk(prefix):
        dirs[:] = sorted(d for d in dirs if os.path.relpath(os.path.join(top, d), prefix) != "info")
        for f in sorted(files):
            full = os.path.join(top, f)
            with open(full, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            paths.append({"_path": os.path.relpath(full, prefix), "path_type": "hardlink",
                          "sha256": digest, "size_in_bytes": os.path.getsize(full)})
    paths.sort(key=lambda p: p["_path"])
    platform, arch = subdir.split("-")
    index = {
        "name": "accord", "version": version, "build": "0", "build_number": 0,
        "depends": [f"__glibc >={glibc}"],
        "platform": platform, "arch": {"64": "x86_64", "aarch64": "aarch64"}[arch], "subdir": subdir,
        "timestamp": int(time.time() * 1000),
    }
    about = {"summary": "Incremental, deduplicating backup and disaster recovery for Anaconda Enterprise 5",
             "description": "The Swift runtime, libcrypto, zlib and libdeflate are linked in; ISA-L is bundled in lib/. "
                            f"Needs glibc >= {glibc}, libstdc++ and libgcc_s from the system."}
    info = os.path.join(prefix, "info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "index.json"), "w") as fh:
        json.dump(index, fh, indent=2, sort_keys=True)
    with open(os.path.join(info, "paths.json"), "w") as fh:
        json.dump({"paths": paths, "paths_version": 1}, fh, indent=2, sort_keys=True)
    with open(os.path.join(info, "about.json"), "w") as fh:
        json.dump(about, fh, indent=2, sort_keys=True)
    with open(os.path.join(info, "files"), "w") as fh:
        fh.write("".join(p["_path"] + "\n" for p in paths))


def index(channel):
    from rattler.index import index_fs
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False, force=True))


def install(channel, prefix, spec):
    import rattler
    from rattler import Channel, Gateway, VirtualPackage

    async def run():
        cache = os.path.join(os.path.dirname(os.path.abspath(prefix)), ".rattler-cache")
        gateway = Gateway(cache_dir=cache)
        url = "file://" + os.path.abspath(channel)
        subdir = "linux-64" if os.uname().machine == "x86_64" else "linux-aarch64"
        records = await rattler.solve(sources=[Channel(url)], specs=[spec], gateway=gateway,
                                      platforms=[subdir, "noarch"], virtual_packages=VirtualPackage.detect())
        await rattler.install(records, target_prefix=prefix, cache_dir=os.path.join(cache, "pkgs"), show_progress=False)
        return records

    records = asyncio.run(run())
    for r in records:
        print(f"installed {r.name.normalized} {r.version} {r.build} from {r.channel}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("metadata")
    m.add_argument("prefix")
    m.add_argument("--version", required=True)
    m.add_argument("--subdir", required=True)
    m.add_argument("--glibc", required=True)
    i = sub.add_parser("index")
    i.add_argument("channel")
    n = sub.add_parser("install")
    n.add_argument("channel")
    n.add_argument("prefix")
    n.add_argument("spec", nargs="?", default="accord")
    a = p.parse_args()
    if a.command == "metadata":
        metadata(a.prefix, a.version, a.subdir, a.glibc)
    elif a.command == "index":
        index(a.channel)
    else:
        install(a.channel, a.prefix, a.spec)
    # py-rattler's runtime threads sometimes crash the interpreter's finalization (seen with 0.28:
    # "PyGILState_Release: thread state ... must be current", exit 134 or a segfault) after the
    # work is done: leave without finalizing, once everything is written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
