"""FTP across a failover: expectations (RELATED data connections) follow to fw2.

vsftpd runs on s1 with a throwaway configuration; Python's ftplib on c1 opens two control
connections through fw1 (whose ruleset attaches the kernel's FTP helper to port 21 and
lets new TCP from the inside reach port 21 only, so data connections pass only as
RELATED). Before the failover one session announces a passive port (227) and the other
an active one (PORT); after it, both data connections are opened through fw2, which
needs the expectations sniffover installed, and then each session transfers a new file
with a fresh PASV / PORT, which needs the ftp helper on fw2's copy of the control
connection. Without sniffover (control run) nothing of it works.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sniffover.lab.hub import Lab, server_ip, stop_process
from tests.lab.test_agent_lab import agent_log, sniffover_ctl, start_agent

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping", "vsftpd")

FILES = {f"f{i}.bin": os.urandom(20_000 + 7_000 * i) for i in range(1, 6)}

# The client: one JSON command per line on stdin, one JSON answer per line on stdout.
CLIENT = r"""
import ftplib, json, socket, sys
server = sys.argv[1]
sessions, pasv, ports = {}, {}, {}

def read_all(sock):
    sock.settimeout(5)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk

def do(cmd, s, name=None):
    if cmd == "connect":
        f = ftplib.FTP(timeout=5)
        f.connect(server, 21)
        f.login()
        sessions[s] = f
        return {}
    f = sessions[s]
    if cmd == "get":  # a whole transfer, passive (name) or active
        f.set_pasv(name.startswith("pasv:"))
        out = []
        f.retrbinary("RETR " + name.split(":")[1], out.append)
        return {"size": len(b"".join(out))}
    if cmd == "pasv_announce":
        pasv[s] = ftplib.parse227(f.sendcmd("PASV"))
        return {"port": pasv[s][1]}
    if cmd == "pasv_finish":
        data = socket.create_connection((server, pasv[s][1]), timeout=5)
        f.sendcmd("RETR " + name)
        got = read_all(data)
        data.close()
        f.voidresp()
        return {"size": len(got)}
    if cmd == "port_announce":
        ports[s] = f.makeport()
        return {"port": ports[s].getsockname()[1]}
    if cmd == "port_finish":
        f.sendcmd("RETR " + name)
        ports[s].settimeout(5)
        conn, _ = ports[s].accept()
        got = read_all(conn)
        conn.close()
        f.voidresp()
        return {"size": len(got)}
    raise ValueError(cmd)

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    try:
        res = do(req["cmd"], req["s"], req.get("name"))
        res["ok"] = True
    except Exception as exc:
        res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(res), flush=True)
"""


class Client:
    def __init__(self, lab: Lab) -> None:
        self.proc = lab.python(
            "c1",
            "-u",
            "-c",
            CLIENT,
            server_ip(1),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._read(15).get("ready")

    def _read(self, timeout: float) -> dict:
        import select

        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return {"ok": False, "error": "client timed out"}
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"ok": False, "error": "client gone"}

    def __call__(self, cmd: str, s: int, name: str | None = None) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, "s": s, "name": name}) + "\n")
        self.proc.stdin.flush()
        return self._read(20)


def start_vsftpd(lab: Lab, tmp: Path) -> subprocess.Popen:
    root, empty = tmp / "root", tmp / "empty"
    root.mkdir()
    empty.mkdir()
    for name, data in FILES.items():
        (root / name).write_bytes(data)
        (root / name).chmod(0o644)
    for d in (tmp, root, empty):
        d.chmod(0o755)
    conf = tmp / "vsftpd.conf"
    conf.write_text(
        "\n".join(
            [
                "listen=YES",
                "listen_ipv6=NO",
                f"listen_address={server_ip(1)}",
                "background=NO",
                "anonymous_enable=YES",
                "no_anon_password=YES",
                "local_enable=NO",
                "write_enable=NO",
                f"anon_root={root}",
                f"secure_chroot_dir={empty}",
                "pasv_enable=YES",
                "pasv_min_port=40000",
                "pasv_max_port=40100",
                "port_enable=YES",
                "connect_from_port_20=NO",
                "seccomp_sandbox=NO",
                "xferlog_enable=NO",
                "idle_session_timeout=60",
                "data_connection_timeout=30",
                "accept_timeout=30",
                "connect_timeout=10",
                "",
            ]
        )
    )
    log = open(tmp / "vsftpd.log", "w")  # noqa: SIM115 - handed to the process
    proc = lab.popen("s1", "vsftpd", str(conf), stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = lab.run("s1", "ss", "-ltnH", "sport = :21", check=False).stdout
        if ":21" in out:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"vsftpd did not start: {(tmp / 'vsftpd.log').read_text()}")


def stop_sessions(lab: Lab) -> None:
    """vsftpd's per-session children (started by us, in s1's namespace): by pid."""
    out = lab.run(None, "ip", "netns", "pids", lab.ns("s1"), check=False).stdout
    for pid in out.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def expectations(lab: Lab, node: str) -> str:
    return lab.run(node, "conntrack", "-L", "expect", check=False).stdout


def run_ftp(with_agent: bool) -> dict:
    r: dict = {}
    with Lab(ftp=True) as lab, tempfile.TemporaryDirectory(prefix="snfftp-") as tmpdir:
        try:
            start_vsftpd(lab, Path(tmpdir))
            agent = start_agent(lab, "--iface", "outside0") if with_agent else None
            cl = Client(lab)
            try:
                for s in (1, 2):
                    assert cl("connect", s)["ok"]
                r["before_pasv"] = cl("get", 1, "pasv:f1.bin")
                r["before_port"] = cl("get", 2, "port:f1.bin")
                r["announce_pasv"] = cl("pasv_announce", 1)
                r["announce_port"] = cl("port_announce", 2)
                if agent is not None:
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        if expectations(lab, "fw2").count("proto=6") >= 2:
                            break
                        time.sleep(0.2)
                    r["fw2_expect"] = expectations(lab, "fw2")
                    r["promote"] = sniffover_ctl(lab, "ctl", "promote").returncode
                r["fw1_expect"] = expectations(lab, "fw1")
                lab.failover()
                r["after_pasv_outstanding"] = cl("pasv_finish", 1, "f2.bin")
                r["after_port_outstanding"] = cl("port_finish", 2, "f3.bin")
                r["after_pasv_new"] = cl("get", 1, "pasv:f4.bin")
                r["after_port_new"] = cl("get", 2, "port:f5.bin")
                r["fw2_table"] = lab.conntrack("fw2")
            finally:
                stop_process(cl.proc)
                if agent is not None:
                    stop_process(agent)
                    r["log"] = agent_log(agent)
                    os.unlink(agent.log_path)  # type: ignore[attr-defined]
        finally:
            stop_sessions(lab)
    return r


def test_ftp_sessions_survive_failover_with_expectations():
    r = run_ftp(with_agent=True)
    info = json.dumps({k: v for k, v in r.items() if k != "log"}, indent=1) + r.get("log", "")
    assert r["before_pasv"] == {"ok": True, "size": len(FILES["f1.bin"])}, info
    assert r["before_port"] == {"ok": True, "size": len(FILES["f1.bin"])}, info
    assert r["promote"] == 0, info
    # fw1's helper and sniffover's copy on fw2: the same two expectations
    for exp in (r["fw1_expect"], r["fw2_expect"]):
        assert f"dport={r['announce_pasv']['port']}" in exp, info
        assert f"dport={r['announce_port']['port']}" in exp, info
    # announced before the failover, opened after it: the installed expectations
    assert r["after_pasv_outstanding"] == {"ok": True, "size": len(FILES["f2.bin"])}, info
    assert r["after_port_outstanding"] == {"ok": True, "size": len(FILES["f3.bin"])}, info
    # announced after the failover on the same control connections: fw2's own ftp helper
    assert r["after_pasv_new"] == {"ok": True, "size": len(FILES["f4.bin"])}, info
    assert r["after_port_new"] == {"ok": True, "size": len(FILES["f5.bin"])}, info


def test_ftp_control_run_without_sniffover_fails():
    r = run_ftp(with_agent=False)
    assert r["before_pasv"]["ok"] and r["before_port"]["ok"], r
    for k in ("after_pasv_outstanding", "after_port_outstanding"):
        assert not r[k]["ok"], r


if __name__ == "__main__":  # quick manual run
    print(json.dumps(run_ftp(len(sys.argv) > 1), indent=1))
