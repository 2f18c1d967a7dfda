"""A majortomo (0.2.0) MDP client that checks replies by the rule in rule.py.

usage: mt_client.py --broker URL --service NAME --count N [--partials K]
                    [--timeout SEC]

Sends requests 0..N-1, one at a time, request(i) as in rule.py (5 frames,
with an empty frame and binary bytes), and reads each reply with
Client.recv_part() until it returns None (i.e. after the FINAL). It checks
that exactly K PARTIALs (default 2) come first, every frame of each, then
the FINAL, every frame; and, after the last request, that no stray message
arrives within 100 ms. Prints `OK n=<N>` and exits 0, or prints the first
mismatch (`FAIL ...`) and exits 1. --timeout (default 30 s) bounds the whole
run; running out of it is a FAIL too. Elapsed time goes to stderr.
"""

import argparse
import signal
import sys
import time

import zmq
from majortomo import Client, error

from rule import final, partial, request


class Fail(Exception):
    pass


def short(frames):
    """repr of a list of frames, each cut to 40 bytes."""
    return "[%s]" % ", ".join(repr(f[:40]) + ("...(%d bytes)" % len(f) if len(f) > 40 else "") for f in frames)


def first_difference(expected, got):
    for k, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            return "frame %d: expected %s got %s" % (k, short([e]), short([g]))
    return "expected %d frames got %d" % (len(expected), len(got))


def run(client, args, deadline):
    def left():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Fail("overall timeout")
        return remaining

    for i in range(args.count):
        req = request(i)
        client.send(args.service, *req)
        want = [partial(j, req) for j in range(args.partials)] + [final(req)]
        for j, expected in enumerate(want):
            try:
                got = client.recv_part(timeout=left())
            except error.Timeout:
                raise Fail("request %d part %d: timed out" % (i, j))
            if got is None:
                raise Fail("request %d: FINAL came as part %d, expected %d PARTIALs first" % (i, j - 1, args.partials))
            if got != expected:
                raise Fail("request %d part %d: %s; whole part: %s" % (i, j, first_difference(expected, got), short(got)))
        # recv_part returns None, with no IO, once the FINAL has been seen.
        try:
            extra = client.recv_part(timeout=0.001)
            then = "nothing" if extra is None else short(extra)
        except error.Timeout:
            extra, then = "timeout", "nothing"
        if extra is not None:
            raise Fail("request %d: part %d was a PARTIAL, not the FINAL; then came %s" % (i, args.partials, then))

    # Nothing may follow the last FINAL (majortomo has no public API for
    # this, hence its private socket).
    if client._socket.poll(100, zmq.POLLIN):
        raise Fail("stray message after the last FINAL: %s" % short(client._socket.recv_multipart()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--partials", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    start = time.monotonic()
    deadline = start + args.timeout

    # Backstop in case anything blocks outside recv_part's timeout.
    def on_alarm(*_):
        raise Fail("overall timeout (alarm)")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, args.timeout + 1)
    try:
        with Client(args.broker) as client:
            run(client, args, deadline)
    except Fail as e:
        print("FAIL", e, flush=True)
        return 1
    except error.Error as e:
        print("FAIL majortomo error: %s: %s" % (type(e).__name__, e), flush=True)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    print("OK n=%d" % args.count, flush=True)
    print("elapsed=%.3fs" % (time.monotonic() - start), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
