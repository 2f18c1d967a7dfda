"""A raw MDP/0.2 client in pyzmq, over CURVE: no MDP library, only the
frames of RFC 18 on a DEALER with pyzmq's CURVE options.

usage: curve_client.py --broker URL --server-key Z85 --public Z85
                       --secret Z85 --count N [--timeout SEC]

Sends N requests to `echo`, one at a time, each `["curve", "<i>"]`, and
checks each answer is FINAL for `echo` with exactly those frames. Prints
`OK n=<N>` and exits 0, or `FAIL ...` and exits 1; running out of
--timeout (default 30 s) for any answer is a FAIL. Exits 2 if this pyzmq's
libzmq has no CURVE.
"""

import argparse
import sys

import zmq


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--broker", required=True)
    p.add_argument("--server-key", required=True)
    p.add_argument("--public", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()
    if not zmq.has("curve"):
        print("FAIL this pyzmq has no CURVE")
        return 2
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.curve_serverkey = a.server_key.encode()
    sock.curve_publickey = a.public.encode()
    sock.curve_secretkey = a.secret.encode()
    sock.linger = 0
    sock.connect(a.broker)
    for i in range(a.count):
        body = [b"curve", str(i).encode()]
        sock.send_multipart([b"MDPC02", b"\x01", b"echo"] + body)
        if not sock.poll(int(a.timeout * 1000)):
            print(f"FAIL no answer to request {i}")
            return 1
        got = sock.recv_multipart()
        want = [b"MDPC02", b"\x03", b"echo"] + body
        if got != want:
            print(f"FAIL request {i}: got {got!r}, want {want!r}")
            return 1
    print(f"OK n={a.count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
