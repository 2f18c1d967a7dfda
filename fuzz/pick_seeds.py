#!/usr/bin/env python3
"""Shrinks a fuzz target's corpus to a few seeds that keep most of its features.

    cargo +nightly fuzz build TARGET
    python3 fuzz/pick_seeds.py TARGET [CORPUS_DIR] [--max-files 40] [--max-bytes 200000]

Runs the target's libFuzzer binary once in set-cover merge mode over
CORPUS_DIR (default fuzz/corpus/TARGET), which records every feature each
input covers, then picks seeds greedily: each next seed is the one adding the
most features not yet covered (the smaller one on ties), until the file or
byte budget is spent or nothing adds a feature. The chosen files replace fuzz/corpus/TARGET.
Run it from the repository root.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile


def features(binary, corpus):
    """Maps each input file to the set of libFuzzer features it covers."""
    with tempfile.TemporaryDirectory() as tmp:
        control = os.path.join(tmp, "control")
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        subprocess.run(
            [binary, "-set_cover_merge=1", f"-merge_control_file={control}", out, corpus],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with open(control) as f:
            lines = f.read().splitlines()
    count = int(lines[0])
    files = lines[2 : 2 + count]
    covered = {}
    for line in lines[2 + count :]:
        parts = line.split()
        if parts and parts[0] == "FT":
            covered[files[int(parts[1])]] = set(parts[2:])
    return covered


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target")
    ap.add_argument("corpus", nargs="?")
    ap.add_argument("--max-files", type=int, default=40)
    ap.add_argument("--max-bytes", type=int, default=200_000)
    args = ap.parse_args()

    binary = f"fuzz/target/x86_64-unknown-linux-gnu/release/{args.target}"
    corpus = args.corpus or f"fuzz/corpus/{args.target}"
    covered = features(binary, corpus)
    total = set().union(*covered.values()) if covered else set()

    chosen, have, used = [], set(), 0
    candidates = dict(covered)
    while candidates and len(chosen) < args.max_files:
        def gain(path):
            return (len(candidates[path] - have), -os.path.getsize(path))

        best = max((p for p in candidates if used + os.path.getsize(p) <= args.max_bytes), key=gain, default=None)
        if best is None or not candidates[best] - have:
            break
        have |= candidates.pop(best)
        used += os.path.getsize(best)
        chosen.append(best)

    dest = f"fuzz/corpus/{args.target}"
    # Inputs that once failed the target stay, whatever they cover.
    regressions = sorted(glob.glob(os.path.join(dest, "regression-*")))
    with tempfile.TemporaryDirectory() as keep:
        for path in chosen + regressions:
            shutil.copy(path, keep)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(keep, dest)
    print(
        f"{args.target}: {len(chosen)} seeds, {used} bytes, "
        f"{len(have)} of {len(total)} features of {len(covered)} inputs",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
