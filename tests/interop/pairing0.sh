#!/usr/bin/env bash
# Pairing (0), all majortomo: mt_client.py and mt_worker.py through
# mt_broker.py, on a free loopback port. Also a template for the Rust tests.
#
# usage: pairing0.sh [COUNT [PARTIALS]]     (defaults: 1000 requests, 3 partials)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
count=${1:-1000}
partials=${2:-3}
py=$(bash "$here/setup-venv.sh" | tail -n 1)

exec 3< <(exec "$py" "$here/mt_broker.py" 'tcp://127.0.0.1:*')
broker=$!
trap 'kill "$broker" 2>/dev/null || true' EXIT
read -r -t 10 word url <&3 || { echo "broker did not start" >&2; exit 1; }
[ "$word" = READY ] || { echo "unexpected broker line: $word $url" >&2; exit 1; }

start=$EPOCHREALTIME
"$py" "$here/mt_worker.py" --broker "$url" --service echo --partials "$partials" --count "$count" --timeout 60 &
worker=$!
"$py" "$here/mt_client.py" --broker "$url" --service echo --partials "$partials" --count "$count" --timeout 60
wait "$worker"
awk -v a="$start" -v b="$EPOCHREALTIME" -v n="$count" -v k="$partials" \
    'BEGIN { printf "pairing0: %d requests x (%d PARTIAL + FINAL) in %.2f s\n", n, k, b - a }'
