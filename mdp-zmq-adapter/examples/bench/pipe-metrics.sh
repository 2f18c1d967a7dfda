#!/usr/bin/env bash
# One run of the end-to-end bench's `pipe` load (16 B bodies) against an
# `mdp-broker` process, with or without `--metrics` and a scraper that GETs
# /metrics once a second, as Prometheus does. See BENCHMARKS.md, "Metrics".
#
#   cargo build --release -p mdp-zmq-adapter --bins --example bench
#   bash mdp-zmq-adapter/examples/bench/pipe-metrics.sh metrics|plain REQUESTS OUT
#
# Appends to OUT the bench's output, to OUT.broker the broker's log (its last
# line has replies_sent), to OUT.cpu the broker's CPU time in clock ticks
# (user + system, every thread), to OUT.scrapes a line per scrape.
set -u
mode=$1 requests=$2 out=$3
T=${TARGET_DIR:-target}/release
port=${PORT:-5710} mport=${METRICS_PORT:-9710}
args=(-b "tcp://127.0.0.1:$port")
[ "$mode" = metrics ] && args+=(--metrics "127.0.0.1:$mport")
"$T/mdp-broker" "${args[@]}" 2>>"$out.broker" &
broker=$!
scraper=
if [ "$mode" = metrics ]; then
    # In bash alone, so that no process is started per scrape.
    (
        sleep 0.2
        while kill -0 $broker 2>/dev/null; do
            if exec 3<>/dev/tcp/127.0.0.1/$mport; then
                printf 'GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&3
                n=0
                while IFS= read -r -u 3 line; do n=$((n + 1)); done
                exec 3<&-
                echo "scrape: $n lines" >>"$out.scrapes"
            fi
            sleep 1
        done
    ) >/dev/null 2>&1 &
    scraper=$!
fi
sleep 0.2
"$T/examples/bench" --loads pipe --sizes 16 --transports external --broker "mdp-broker=tcp://127.0.0.1:$port" \
    --requests "$requests" --warmup 0.5 >>"$out" 2>/dev/null
read -r -a stat </proc/$broker/stat
echo "ticks $((stat[13] + stat[14]))" >>"$out.cpu"
kill -TERM $broker
wait $broker
# The scraper ends with the broker; its last sleep is not waited for.
[ -n "$scraper" ] && kill $scraper 2>/dev/null
exit 0
