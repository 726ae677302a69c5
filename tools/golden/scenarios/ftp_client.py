"""The FTP client of the ``ftp_*`` NAT scenarios (record_ftp_nat).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.ftp_client JSON-ARGS`` (``dst``: the server address,
``src``: this host's address (what PORT/EPRT announce), ``steps``: "port" / "pasv" /
"noop" in order). Each transfer reads the whole file; the control connection stays
open (ESTABLISHED at the dump) until the recorder ends the program.
"""

import re
import socket
import time

from tools.golden.scenarios.prelude import A, connect, drain, fam, hold, listener, say

dst, src = A["dst"], A["src"]
v6 = fam(dst) == socket.AF_INET6
c = connect(dst, 21, timeout=5)
f = c.makefile("rb")


def reply() -> str:
    line = f.readline().decode(errors="replace")
    while len(line) > 3 and line[3] == "-":  # multi-line reply
        line = f.readline().decode(errors="replace")
    return line.strip()


def cmd(text: str) -> str:
    c.sendall(text.encode() + b"\r\n")
    return reply()


reply()
cmd("USER anonymous")
cmd("PASS x")
for step in A["steps"]:
    time.sleep(0.1)
    if step == "port":
        ls = listener(src, 0)
        port = ls.getsockname()[1]
        if v6:
            cmd(f"EPRT |2|{src}|{port}|")
        else:
            cmd(f"PORT {src.replace('.', ',')},{port >> 8},{port & 0xFF}")
        c.sendall(b"RETR file\r\n")
        reply()  # 150
        ls.settimeout(5)
        d, _a = ls.accept()
        say("port", drain(d))
        d.close()
        ls.close()
        reply()  # 226
    elif step == "pasv":
        got = cmd("EPSV" if v6 else "PASV")
        if v6:
            addr, port = dst, int(re.search(r"\|\|\|(\d+)\|", got).group(1))  # type: ignore[union-attr]
        else:
            n = [int(x) for x in re.search(r"\(([\d,]+)\)", got).group(1).split(",")]  # type: ignore[union-attr]
            addr, port = dst, n[4] * 256 + n[5]  # the address we reached: NAT may rewrite it
        c.sendall(b"RETR file\r\n")
        d = connect(addr, port)
        reply()  # 150
        say("pasv", drain(d))
        d.close()
        reply()  # 226
    elif step == "noop":
        say("noop", cmd("NOOP"))
time.sleep(0.3)
say("done")
hold(30)
