"""The TFTP client of the ``tftp_snat`` scenario (record_ftp_nat).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tftp_client JSON-ARGS`` (``dst``, ``src``). A read
request from port 40690, answered from a new port of the server and ACKed; then one from
port 40691 that the server leaves unanswered.
"""

import socket
import struct
import time

from tools.golden.scenarios.prelude import A, hold, say

a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind((A["src"], 40690))
a.settimeout(5)
a.sendto(struct.pack("!H", 1) + b"f1.bin\0octet\0", (A["dst"], 69))
data, tid = a.recvfrom(600)
a.sendto(struct.pack("!HH", 4, 1), tid)
say("got", len(data) - 4, tid[1])
time.sleep(0.2)
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b.bind((A["src"], 40691))
b.sendto(struct.pack("!H", 1) + b"f2.bin\0octet\0", (A["dst"], 69))
time.sleep(0.3)
say("done")
hold(30)
