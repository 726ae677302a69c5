"""TFTP across a failover: the expectation for the server's answer follows to fw2.

Both firewalls attach the kernel's TFTP helper to UDP flows to port 69 (``Lab(tftp=True)``);
the strict ruleset admits new UDP only from the inside, so the server's answer, which
comes from a new port of the server (RFC 1350's transfer identifier), passes only as
RELATED to the request. A small controlled TFTP responder runs on s1 and a client with a
plain UDP socket on a fixed port on c1. First a normal read and write through fw1. Then
the responder holds its answers: the client sends a read request and a write request,
fw1's helper registers the two expectations, sniffover on fw2 installs them, promote,
failover, and only then does the responder answer, from new ports: the read's data and
the write's ACK 0 must reach the client through fw2, and both transfers complete. The
client never sends a request again (that would let fw2's own helper expect the answer).
Without sniffover (control run) neither answer gets through.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from sniffover.lab.hub import Lab, client_ip, server_ip, stop_process
from tests.lab.test_agent_lab import agent_log, sniffover_ctl, start_agent

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping")


def content(name: str) -> bytes:
    """The same file contents on both ends (several blocks, a short last one)."""
    n = 1000 * int(name[1:-4]) + 123
    return bytes((i * 31 + len(name)) % 251 for i in range(n))


CONTENT = inspect.getsource(content)  # the scripts below define it too

# s1: a TFTP responder on :69. Each transfer runs from a new socket (a new port), as RFC
# 1350 says. "hold" keeps requests unanswered until "answer". JSON lines on stdin/stdout.
SERVER = (
    CONTENT
    + r"""
import json, socket, struct, sys, threading
addr = sys.argv[1]
held, hold, written, lock = [], [False], {}, threading.Lock()

def transfer(op, name, peer):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    s.settimeout(1.0)
    try:
        if op == 1:  # RRQ: DATA blocks, each ACKed
            data, block = content(name), 1
            while True:
                chunk = data[(block - 1) * 512 : block * 512]
                for _ in range(6):
                    s.sendto(struct.pack("!HH", 3, block & 0xFFFF) + chunk, peer)
                    try:
                        pkt, src = s.recvfrom(600)
                    except socket.timeout:
                        continue
                    if src == peer and pkt[:4] == struct.pack("!HH", 4, block & 0xFFFF):
                        break
                else:
                    return
                if len(chunk) < 512:
                    return
                block += 1
        else:  # WRQ: ACK 0, then DATA blocks, each ACKed
            got, block = b"", 0
            while True:
                for _ in range(6):
                    s.sendto(struct.pack("!HH", 4, block & 0xFFFF), peer)
                    try:
                        pkt, src = s.recvfrom(600)
                    except socket.timeout:
                        continue
                    if src == peer and pkt[:4] == struct.pack("!HH", 3, (block + 1) & 0xFFFF):
                        break
                else:
                    return
                got += pkt[4:]
                block += 1
                if len(pkt) - 4 < 512:
                    s.sendto(struct.pack("!HH", 4, block & 0xFFFF), peer)
                    with lock:
                        written[name] = got
                    return
    finally:
        s.close()

def listen():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 69))
    while True:
        pkt, peer = s.recvfrom(600)
        op = struct.unpack_from("!H", pkt)[0]
        if op not in (1, 2):
            continue
        name = pkt[2:].split(b"\0")[0].decode()
        with lock:
            if hold[0]:
                held.append((op, name, peer))
                continue
        threading.Thread(target=transfer, args=(op, name, peer), daemon=True).start()

threading.Thread(target=listen, daemon=True).start()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)["cmd"]
    with lock:
        if cmd == "hold":
            hold[0] = True
        elif cmd == "answer":
            hold[0] = False
            for req in held:
                threading.Thread(target=transfer, args=req, daemon=True).start()
            held.clear()
        out = {"held": len(held), "written": {k: len(v) for k, v in written.items()},
               "sha": {k: __import__("hashlib").sha256(v).hexdigest() for k, v in written.items()}}
    print(json.dumps(out), flush=True)
"""
)

# c1: "request" sends an RRQ/WRQ from a fixed port (once: never again), "finish" waits for
# the answer from whatever port the server uses and completes the transfer; "get"/"put" do
# both at once.
CLIENT = (
    CONTENT
    + r"""
import hashlib, json, socket, struct, sys
me, server = sys.argv[1], sys.argv[2]
socks = {}

def request(op, name, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((me, port))
    s.sendto(struct.pack("!H", op) + name.encode() + b"\0octet\0", (server, 69))
    socks[port] = (s, op, name)
    return {}

def finish(port, first_wait):
    s, op, name = socks.pop(port)
    try:
        s.settimeout(first_wait)
        if op == 1:
            got, block, tid = b"", 1, None
            while True:
                for _ in range(4):
                    try:
                        pkt, src = s.recvfrom(600)
                    except socket.timeout:
                        if tid is None:
                            return {"ok": False, "error": "no answer"}
                        s.sendto(struct.pack("!HH", 4, (block - 1) & 0xFFFF), tid)
                        continue
                    if tid is None and src[1] != 69:
                        tid = src
                        s.settimeout(1.0)
                    if src == tid and pkt[:4] == struct.pack("!HH", 3, block & 0xFFFF):
                        break
                else:
                    return {"ok": False, "error": f"stalled at block {block}"}
                got += pkt[4:]
                s.sendto(struct.pack("!HH", 4, block & 0xFFFF), tid)
                if len(pkt) - 4 < 512:
                    return {"ok": True, "size": len(got), "tid": tid[1],
                            "sha": hashlib.sha256(got).hexdigest()}
                block += 1
        data = content(name)
        try:
            pkt, tid = s.recvfrom(600)
        except socket.timeout:
            return {"ok": False, "error": "no answer"}
        if pkt[:4] != struct.pack("!HH", 4, 0):
            return {"ok": False, "error": f"unexpected {pkt[:4].hex()}"}
        s.settimeout(1.0)
        block = 1
        while True:
            chunk = data[(block - 1) * 512 : block * 512]
            for _ in range(4):
                s.sendto(struct.pack("!HH", 3, block & 0xFFFF) + chunk, tid)
                try:
                    pkt, src = s.recvfrom(600)
                except socket.timeout:
                    continue
                if src == tid and pkt[:4] == struct.pack("!HH", 4, block & 0xFFFF):
                    break
            else:
                return {"ok": False, "error": f"stalled at block {block}"}
            if len(chunk) < 512:
                return {"ok": True, "size": len(data), "tid": tid[1]}
            block += 1
    finally:
        s.close()

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    try:
        cmd, port = req["cmd"], req["port"]
        if cmd in ("get", "put"):
            request(1 if cmd == "get" else 2, req["name"], port)
            res = finish(port, 3.0)
        elif cmd == "request":
            res = request(req["op"], req["name"], port)
            res["ok"] = True
        else:
            res = finish(port, req.get("wait", 4.0))
    except Exception as exc:
        res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(res), flush=True)
"""
)


class Proc:
    """A JSON-lines helper process in a lab namespace."""

    def __init__(self, lab: Lab, node: str, script: str, *args: str) -> None:
        self.proc = lab.python(
            node,
            "-u",
            "-c",
            script,
            *args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._read(15).get("ready"), f"{node} helper did not start"

    def _read(self, timeout: float) -> dict:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return {"ok": False, "error": "timed out"}
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"ok": False, "error": "process gone"}

    def __call__(self, cmd: str, timeout: float = 20.0, **kw: object) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)


def sha(name: str) -> str:
    return hashlib.sha256(content(name)).hexdigest()


def expectations(lab: Lab, node: str) -> str:
    return lab.run(node, "conntrack", "-L", "expect", check=False).stdout


def wait_for(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


GET_PORT, PUT_PORT = 40690, 40691  # the held transfers' client ports


def run_tftp(with_agent: bool) -> dict:
    r: dict = {}
    with Lab(tftp=True) as lab:
        server = Proc(lab, "s1", SERVER, server_ip(1))
        client = Proc(lab, "c1", CLIENT, client_ip(1), server_ip(1))
        agent = start_agent(lab, "--iface", "outside0") if with_agent else None
        try:
            # a normal read and write through fw1 (its helper makes the answers RELATED)
            r["before_get"] = client("get", port=40600, name="f3.bin")
            r["before_put"] = client("put", port=40601, name="f2.bin")
            r["before_server"] = server("status")
            # requests sent, answers held back by the responder
            server("hold")
            r["req_get"] = client("request", port=GET_PORT, op=1, name="f5.bin")
            r["req_put"] = client("request", port=PUT_PORT, op=2, name="f4.bin")
            r["held"] = wait_for(lambda: server("status").get("held") == 2, 5)
            r["fw1_expect"] = expectations(lab, "fw1")
            if agent is not None:
                wait_for(lambda: expectations(lab, "fw2").count("proto=17") >= 2, 10)
                r["fw2_expect"] = expectations(lab, "fw2")
                r["fw2_masters"] = lab.conntrack("fw2", "-p", "udp", "--dport", "69")
                r["promote"] = sniffover_ctl(lab, "ctl", "promote").returncode
            lab.failover()
            server("answer")
            r["after_get"] = client("finish", port=GET_PORT, wait=4.0)
            r["after_put"] = client("finish", port=PUT_PORT, wait=4.0)
            r["after_server"] = server("status")
            r["fw2_table"] = lab.conntrack("fw2", "-p", "udp")
            r["fw2_expect_after"] = expectations(lab, "fw2")
        finally:
            stop_process(client.proc)
            stop_process(server.proc)
            if agent is not None:
                stop_process(agent)
                r["log"] = agent_log(agent)
                os.unlink(agent.log_path)  # type: ignore[attr-defined]
    return r


def test_tftp_answers_after_failover_with_expectations():
    r = run_tftp(with_agent=True)
    info = json.dumps({k: v for k, v in r.items() if k != "log"}, indent=1) + r.get("log", "")
    assert r["before_get"]["ok"] and r["before_get"]["sha"] == sha("f3.bin"), info
    assert r["before_get"]["tid"] != 69, info  # the answer came from a new port
    assert r["before_put"]["ok"], info
    assert r["before_server"]["sha"]["f2.bin"] == sha("f2.bin"), info
    assert r["held"], info
    # fw1's helper and sniffover's copy on fw2: the same two expectations
    for exp in (r["fw1_expect"], r["fw2_expect"]):
        for port in (GET_PORT, PUT_PORT):
            line = next((x for x in exp.splitlines() if f"dport={port} " in x), "")
            assert "proto=17" in line and f"src={server_ip(1)}" in line, info
            assert "mask-src=255.255.255.255" in line and "sport=0 dport=65535" in line, info
    assert "helper=tftp" in r["fw2_masters"], info  # CTA_HELP "tftp" on the request flows
    assert r["promote"] == 0, info
    # requested before the failover, answered after it from new ports: RELATED on fw2
    assert r["after_get"]["ok"] and r["after_get"]["sha"] == sha("f5.bin"), info
    assert r["after_put"]["ok"], info
    assert r["after_server"]["sha"]["f4.bin"] == sha("f4.bin"), info
    assert f"dport={GET_PORT} " not in r["fw2_expect_after"], info  # consumed


def test_tftp_control_run_without_sniffover_fails():
    r = run_tftp(with_agent=False)
    info = json.dumps(r, indent=1)
    assert r["before_get"]["ok"] and r["before_put"]["ok"], info
    assert f"dport={GET_PORT} " in r["fw1_expect"], info
    assert not r["after_get"]["ok"] and not r["after_put"]["ok"], info


if __name__ == "__main__":  # quick manual run
    print(json.dumps(run_tftp(len(sys.argv) > 1), indent=1))
