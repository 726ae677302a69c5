"""A scripted TFTP server for the ``tftp_snat`` scenario (record_ftp_nat).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tftp_server JSON-ARGS`` (``host``). Answers the first
read request from a new port (one short DATA block, then the client's ACK) and leaves
the second unanswered (its expectation is still outstanding at the dump).
"""

import socket
import struct

from tools.golden.scenarios.prelude import A, hold, payload, say

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((A["host"], 69))
s.settimeout(10)
say("ready")
for n in range(2):
    pkt, peer = s.recvfrom(600)
    if n == 0:
        t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t.bind((A["host"], 0))
        t.settimeout(3)
        t.sendto(struct.pack("!HH", 3, 1) + payload(100, b"t"), peer)
        t.recvfrom(600)  # ACK 1
        say("answered", peer)
say("done")
hold(30)
