"""A scripted FTP server for the ``ftp_*`` NAT scenarios (record_ftp_nat).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.ftp_server JSON-ARGS`` (``host``; ``pad``: write the
address in 227 with three digits per number, as some servers do, so the router's NAT
helper rewrites it to another length even when the address stays). One control
connection; PORT/EPRT/PASV/EPSV, RETR (3000 bytes), NOOP; bounded in time.
"""

import socket
import time

from tools.golden.scenarios.prelude import A, connect, fam, listener, payload, say

host = A["host"]
ls = listener(host, 21)
say("ready")
ls.settimeout(15)
c, _a = ls.accept()
c.settimeout(10)
f = c.makefile("rb")
c.sendall(b"220 scripted ready\r\n")
active: tuple[str, int] | None = None
passive: socket.socket | None = None
end = time.time() + 30
while time.time() < end:
    line = f.readline().decode(errors="replace").strip()
    if not line:
        break
    cmd, _, arg = line.partition(" ")
    cmd = cmd.upper()
    if cmd in ("USER", "PASS", "TYPE"):
        c.sendall(b"230 ok\r\n")
    elif cmd == "PORT":
        n = [int(x) for x in arg.split(",")]
        active, passive = (".".join(map(str, n[:4])), n[4] * 256 + n[5]), None
        c.sendall(b"200 PORT ok\r\n")
    elif cmd == "EPRT":
        _, _, addr, port, _ = arg.split(arg[0])
        active, passive = (addr, int(port)), None
        c.sendall(b"200 EPRT ok\r\n")
    elif cmd in ("PASV", "EPSV"):
        passive, active = listener(host, 0), None
        port = passive.getsockname()[1]
        if cmd == "EPSV":
            c.sendall(f"229 Entering Extended Passive Mode (|||{port}|)\r\n".encode())
        else:
            fmt = "{:03d}" if A.get("pad") else "{}"
            nums = [fmt.format(int(x)) for x in host.split(".")]
            nums += [str(port >> 8), str(port & 0xFF)]
            c.sendall(f"227 Entering Passive Mode ({','.join(nums)}).\r\n".encode())
    elif cmd == "RETR":
        c.sendall(b"150 opening data connection\r\n")
        if active is not None:
            d = connect(active[0], active[1])
        elif passive is not None:
            passive.settimeout(5)
            d, _a = passive.accept()
        else:
            c.sendall(b"425 no data connection\r\n")
            continue
        d.sendall(payload(3000, b"d"))
        d.close()
        active = passive = None
        c.sendall(b"226 transfer complete\r\n")
    elif cmd == "NOOP":
        c.sendall(b"200 NOOP ok\r\n")
    else:
        c.sendall(b"500 unknown\r\n")
say("done", fam(host))
time.sleep(30)
