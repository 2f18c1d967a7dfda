"""A majortomo (0.2.0) MDP worker answering by the rule in rule.py.

usage: mt_worker.py --broker URL --service NAME [--partials K] [--count N]
                    [--timeout SEC] [--heartbeat-interval SEC] [--heartbeat-timeout SEC]

For each request R (a list of frames) it sends K PARTIAL replies, PARTIAL j
= [b"part", b"<j>"] + R for j = 0..K-1, then FINAL = [b"final"] + reversed(R)
(K defaults to 2). majortomo's worker checks nothing in the request.

Its one stdout line, at exit, says why it stopped:
  DONE served=<n>          served --count N requests (default 0 = no limit),
                           or got SIGTERM/SIGINT; exit 0
  DISCONNECTED served=<n>  the broker sent DISCONNECT (majortomo's worker then
                           stops for good: it does not reconnect); exit 3
  TIMEOUT served=<n>       --timeout (default 60 s) passed first; exit 2
Except after DISCONNECT it sends DISCONNECT to the broker before exiting.
Heartbeat flags are majortomo's Worker arguments (defaults 2.5 s and 10 s).
"""

import argparse
import signal
import sys

from majortomo import Worker, WorkerRequestsIterator, protocol

from rule import final, partial


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--partials", type=int, default=2)
    ap.add_argument("--count", type=int, default=0, help="0 = until SIGTERM")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--heartbeat-interval", type=float, default=protocol.DEFAULT_HEARTBEAT_INTERVAL)
    ap.add_argument("--heartbeat-timeout", type=float, default=protocol.DEFAULT_HEARTBEAT_TIMEOUT)
    args = ap.parse_args()

    worker = Worker(args.broker, args.service, heartbeat_interval=args.heartbeat_interval,
                    heartbeat_timeout=args.heartbeat_timeout)
    requests = WorkerRequestsIterator(worker)
    why = None  # set when we stop it; if it ends by itself, the broker disconnected it

    # requests.stop() sends DISCONNECT and closes the socket, which makes the
    # blocked wait_for_request() end the iteration.
    def stop_because(reason):
        def handler(*_):
            nonlocal why
            why = reason
            requests.stop()
        return handler

    signal.signal(signal.SIGTERM, stop_because("DONE"))
    signal.signal(signal.SIGINT, stop_because("DONE"))
    signal.signal(signal.SIGALRM, stop_because("TIMEOUT"))
    signal.setitimer(signal.ITIMER_REAL, args.timeout)

    served = 0
    try:
        for req in requests:
            for j in range(args.partials):
                requests.send_reply_partial(partial(j, req))
            requests.send_reply_final(final(req))
            served += 1
            if served == args.count:
                why = "DONE"
                requests.stop()
                break
    except Exception:
        if why is None:  # not a signal closing the socket under a send
            raise

    signal.setitimer(signal.ITIMER_REAL, 0)
    why = why or "DISCONNECTED"
    print(why, "served=%d" % served, flush=True)
    return {"DONE": 0, "TIMEOUT": 2, "DISCONNECTED": 3}[why]


if __name__ == "__main__":
    sys.exit(main())
