#!/usr/bin/env bash
# Make a Python venv holding majortomo 0.2.0 (plus six, which majortomo
# imports but forgets to declare, and pyzmq) for the interop tests.
#
# usage: setup-venv.sh [VENV_DIR]     (default: <repo>/target/majortomo-venv)
#
# Idempotent: if VENV_DIR already imports majortomo, six and zmq, it does
# nothing. The last line printed is always the venv's python (absolute path).
# Needs python3 (>= 3.6) and network access to PyPI only. Env: PYTHON=...
# picks the base interpreter (default python3).
#
# If `python3 -m venv` fails (Debian without python3-venv has no ensurepip),
# it falls back to virtualenv, which bundles its own pip: installed with
# `pip install --target` into a scratch dir (allowed even where pip refuses
# system installs, PEP 668).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${1:-$repo/target/majortomo-venv}
mkdir -p "$(dirname "$venv")"
venv=$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")
py=$venv/bin/python
base=${PYTHON:-python3}
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

works() {
    [ -x "$py" ] && "$py" -c 'import majortomo.broker, majortomo.client, majortomo.worker, six, zmq' >/dev/null 2>&1
}

# Tests may call this concurrently: serialise on a lock file beside the venv.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv.lock"
    flock 9
fi

if ! works; then
    if [ ! -x "$py" ] || ! "$py" -m pip --version >/dev/null 2>&1; then
        rm -rf "$venv"
        if ! "$base" -m venv "$venv" >/dev/null 2>&1; then
            echo "setup-venv: '$base -m venv' failed; falling back to virtualenv" >&2
            rm -rf "$venv"
            scratch=$(mktemp -d)
            trap 'rm -rf "$scratch"' EXIT
            "$base" -m pip install -q --target "$scratch" virtualenv >&2
            PYTHONPATH=$scratch "$base" -m virtualenv -q "$venv" >&2
        fi
    fi
    "$py" -m pip install -q majortomo==0.2.0 six pyzmq >&2
    works || { echo "setup-venv: majortomo still not importable in $venv" >&2; exit 1; }
fi

echo "$py"
