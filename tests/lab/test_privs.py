"""``sniffover.agent.privs.drop_privileges`` in child processes (root only).

Each check runs in a fresh child inside a scratch network namespace (``unshare -n``:
anonymous, gone with the child), so neither the test process nor the root namespace
changes. After the drop, /proc/self/status must show only CAP_NET_ADMIN and CAP_NET_RAW
(effective, permitted, bounding), a ctnetlink dump (needs CAP_NET_ADMIN) and a raw
AF_PACKET socket (CAP_NET_RAW) must still work, and ``chown`` must fail with EPERM.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytestmark = pytest.mark.requires("unshare")

NET_ADMIN, NET_RAW = 12, 13
KEPT = 1 << NET_ADMIN | 1 << NET_RAW

PROBE = textwrap.dedent(
    """
    import errno, json, os, socket, struct, sys, tempfile, threading
    from sniffover.agent.privs import PrivilegeError, drop_privileges

    args = json.loads(sys.argv[1])
    out = {}
    fd, path = tempfile.mkstemp()
    os.close(fd)
    try:
        if args.get("setuid_first"):
            os.setuid(65534)
        if args.get("thread"):
            ev = threading.Event()
            threading.Thread(target=ev.wait, daemon=True).start()
        try:
            out["done"] = drop_privileges(**args["kwargs"])
        except PrivilegeError as exc:
            out["error"] = str(exc)
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "NoNewPrivs", "Uid"):
                    out[key] = value.strip()

        def ctnetlink_dump():
            # IPCTNL_MSG_CT_GET (NFNL_SUBSYS_CTNETLINK << 8), NLM_F_REQUEST | NLM_F_DUMP
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
            try:
                s.bind((0, 0))
                s.settimeout(5)
                body = struct.pack("=BBH", socket.AF_INET, 0, 0)
                s.send(struct.pack("=IHHII", 16 + len(body), 1 << 8 | 1, 0x301, 1, 0) + body)
                while True:
                    data = s.recv(65536)
                    off = 0
                    while off + 16 <= len(data):
                        ln, typ = struct.unpack_from("=IH", data, off)
                        if typ == 3:  # NLMSG_DONE
                            return "ok"
                        if typ == 2:  # NLMSG_ERROR
                            err = -struct.unpack_from("=i", data, off + 16)[0]
                            return "ok" if err == 0 else errno.errorcode.get(err, str(err))
                        off += (ln + 3) & ~3
            finally:
                s.close()

        out["ctnetlink"] = ctnetlink_dump()
        try:
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close()
            out["packet"] = "ok"
        except OSError as exc:
            out["packet"] = errno.errorcode.get(exc.errno or 0, str(exc))
        try:
            os.chown(path, 12345, 12345)
            out["chown"] = "ok"
        except OSError as exc:
            out["chown"] = errno.errorcode.get(exc.errno or 0, str(exc))
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    print(json.dumps(out))
    """
)


def probe(**args: Any) -> dict[str, Any]:
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_keeps_only_net_admin_and_net_raw() -> None:
    out = probe(kwargs={})
    assert "error" not in out, out
    for key in ("CapEff", "CapPrm", "CapBnd"):
        assert int(out[key], 16) == KEPT, (key, out)
    assert int(out["CapInh"], 16) == 0 and int(out["CapAmb"], 16) == 0
    assert out["NoNewPrivs"] == "1"
    assert out["ctnetlink"] == "ok"
    assert out["packet"] == "ok"
    assert out["chown"] == "EPERM"
    assert any("no_new_privs" in line for line in out["done"])


def test_switches_user_keeping_the_two_capabilities() -> None:
    out = probe(kwargs={"user": "nobody"})
    assert "error" not in out, out
    assert out["Uid"].split() == ["65534"] * 4
    for key in ("CapEff", "CapPrm", "CapBnd"):
        assert int(out[key], 16) == KEPT, (key, out)
    assert out["ctnetlink"] == "ok"
    assert out["packet"] == "ok"
    assert out["chown"] == "EPERM"
    assert any("switched to user nobody" in line for line in out["done"])


def test_without_net_admin_ctnetlink_is_refused() -> None:
    # the negative control: the ctnetlink probe really needs CAP_NET_ADMIN
    out = probe(kwargs={"keep": ["CAP_NET_RAW"]})
    assert int(out["CapEff"], 16) == 1 << NET_RAW
    assert out["ctnetlink"] == "EPERM"
    assert out["packet"] == "ok"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"kwargs": {"keep": ["CAP_NET_RAW", "CAP_FLY"]}}, "unknown capability 'CAP_FLY'"),
        ({"kwargs": {"user": "no-such-user-snffuzz"}}, "no such user 'no-such-user-snffuzz'"),
        ({"kwargs": {}, "thread": True}, "other threads are running"),
        ({"kwargs": {}, "setuid_first": True}, "CAP_NET_ADMIN, CAP_NET_RAW not held"),
    ],
)
def test_clear_one_line_errors_change_nothing(args: dict[str, Any], message: str) -> None:
    out = probe(**args)
    assert message in out["error"], out
    assert "\n" not in out["error"]
    if not args.get("setuid_first"):
        assert int(out["CapBnd"], 16) != KEPT  # nothing was dropped
        assert out["NoNewPrivs"] == "0"
