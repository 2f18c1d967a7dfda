"""Run majortomo's MDP broker (majortomo 0.2.0) for the interop tests.

usage: mt_broker.py URL [-i SEC] [-t SEC] [-B SEC] [-v | -D]

URL must be tcp://127.0.0.1:PORT, tcp://127.0.0.1:* (any free port) or
ipc://PATH: nothing else is allowed to bind. Once bound, prints exactly one
line on stdout, `READY <endpoint>` (the port resolved if it was `*`), then
serves until SIGTERM or SIGINT, and exits 0.

-i/-t/-B are majortomo's own flags with its defaults: heartbeat interval
(2.5 s), heartbeat timeout (10 s), busy-worker timeout (900 s); see NOTES.md.
Unlike majortomo's CLI (`python -m majortomo.broker`), logging defaults to
WARNING, because at INFO it logs every message; -v gives INFO, -D DEBUG.
"""

import argparse
import logging
import re
import signal
import sys

import zmq
from majortomo import protocol
from majortomo.broker import Broker

ALLOWED_URL = re.compile(r"^(tcp://127\.0\.0\.1:(\d+|\*)|ipc://.+)$")


class InteropBroker(Broker):
    """majortomo's Broker, announcing its endpoint once bound."""

    def bind(self):
        super().bind()
        endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        print("READY", endpoint, flush=True)

    def close(self):
        # majortomo's close() calls disconnect() on a bound socket, which
        # raises; just close it.
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None


class Stop(BaseException):
    """Raised by the signal handler; BaseException so that Broker.run()'s
    `except Exception` does not log it as a failure."""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("-i", "--heartbeat-interval", type=float, default=protocol.DEFAULT_HEARTBEAT_INTERVAL)
    ap.add_argument("-t", "--heartbeat-timeout", type=float, default=protocol.DEFAULT_HEARTBEAT_TIMEOUT)
    ap.add_argument("-B", "--busy-worker-timeout", type=float, default=protocol.DEFAULT_BUSY_WORKER_TIMEOUT)
    ap.add_argument("-v", "--verbose", action="store_true", help="INFO logging")
    ap.add_argument("-D", "--debug", action="store_true", help="DEBUG logging")
    args = ap.parse_args()
    if not ALLOWED_URL.match(args.url):
        ap.error("URL must be tcp://127.0.0.1:PORT, tcp://127.0.0.1:* or ipc://PATH")

    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s mt_broker %(levelname)s %(message)s")

    broker = InteropBroker(bind=args.url, heartbeat_interval=args.heartbeat_interval,
                           heartbeat_timeout=args.heartbeat_timeout,
                           busy_worker_timeout=args.busy_worker_timeout)

    # majortomo's own handler only sets the stop flag, which is seen when recv
    # next times out (up to one heartbeat interval later); raising from the
    # handler interrupts the blocking recv and stops at once.
    def on_signal(*_):
        broker.stop()
        raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        broker.run()
    except Stop:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
