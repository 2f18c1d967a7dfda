"""The frame rule shared by mt_client.py and mt_worker.py (and to be copied
exactly by the Rust side of the interop tests).

Request number i (0-based) sent by mt_client.py has 5 frames:

    request(i) = [b"req",
                  ascii decimal of i,                  e.g. b"17"
                  b"\\x00\\xff" + i as 4-byte big-endian,
                  b"",                                  (an empty body frame)
                  bytes(range(256)) * (i % 4)]          (0, 256, 512 or 768 bytes)

A worker given any request R (a list of 1+ frames) answers with K PARTIAL
replies and then one FINAL (K is --partials, the same on both sides):

    PARTIAL j, for j in 0..K-1:  [b"part", ascii decimal of j] + R
    FINAL:                       [b"final"] + R reversed

The client checks every frame of every part, that exactly K PARTIALs come
before the FINAL, and that nothing follows the FINAL.
"""


def request(i):
    return [b"req", str(i).encode(), b"\x00\xff" + i.to_bytes(4, "big"), b"", bytes(range(256)) * (i % 4)]


def partial(j, req):
    return [b"part", str(j).encode()] + list(req)


def final(req):
    return [b"final"] + list(reversed(req))
