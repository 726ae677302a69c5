"""The helper registry: every place that depends on which helpers exist reads it."""

from __future__ import annotations

import pytest

from sniffover.capture import decode
from sniffover.capture.bpf import prefilter_bpf
from sniffover.conntrack.entry import IPS_SEEN_REPLY, Conn
from sniffover.conntrack.expect import Expectation, Expectations, ExpectPolicy, Helper
from sniffover.conntrack.helpers import HELPER_PORTS, HELPERS, HelperFollower, ftp, select, tftp
from sniffover.kernel.installer import Installer
from tests.helpers import A, B

RRQ = b"\x00\x01file\x00octet\x00"


def test_registry_holds_one_record_per_helper():
    assert [h.name for h in HELPERS] == ["ftp", "tftp"]
    assert ftp.HELPER.key == (6, ftp.FTP_PORT) and tftp.HELPER.key == (17, tftp.TFTP_PORT)
    assert len({h.key for h in HELPERS}) == len(HELPERS)
    assert HELPER_PORTS == (ftp.FTP_PORT, tftp.TFTP_PORT)
    assert select(["tftp"]) == (tftp.HELPER,)
    with pytest.raises(ValueError):
        select(["sip"])


def test_decoder_payload_ports_come_from_the_registry():
    assert {ftp.FTP_PORT} == decode.TCP_PAYLOAD_PORTS
    assert {tftp.TFTP_PORT} == decode.UDP_PAYLOAD_PORTS


def test_installer_helper_names_and_unreplied_masters():
    inst = Installer(sock=None, helpers=["ftp", "tftp"])  # type: ignore[arg-type]
    assert inst.helper_names == {(6, ftp.FTP_PORT): "ftp", (17, tftp.TFTP_PORT): "tftp"}
    assert inst.unreplied == {(17, tftp.TFTP_PORT)}
    by_name = Installer(sock=None, helpers=["tftp"])  # type: ignore[arg-type]
    assert by_name.helper_names == {(17, tftp.TFTP_PORT): "tftp"}
    assert Installer(sock=None).helper_names == {}  # type: ignore[arg-type]


def test_prefilter_passes_the_tcp_helper_ports():
    plain = prefilter_bpf(16)
    # the agent's text before the registry: "(tcp port 21) or " + the prefilter
    assert prefilter_bpf(16, select(["ftp", "tftp"])) == f"(tcp port {ftp.FTP_PORT}) or {plain}"
    assert prefilter_bpf(16, select(["tftp"])) == plain  # non-TCP passes anyway


def test_dispatch_is_by_protocol_and_port():
    """A second UDP helper on another port does not take TFTP's requests, nor they its."""
    seen: list[int] = []

    def other(conn: Conn, direction: int, payload: bytes, now: float) -> Expectation | None:
        seen.append(conn.orig[4])
        return None

    fake = Helper("fake", 17, 5060, other, ExpectPolicy(1, 60.0), False, True)
    f = Expectations((tftp.HELPER, fake))
    request = Conn((17, A, B, 40000, 69), (17, B, A, 69, 40000), 0.0)
    exp = f.feed(request, 0, RRQ, 0.0)
    assert exp is not None and exp.kind == "RRQ" and exp.expires == 300.0 and seen == []
    sip = Conn((17, A, B, 40000, 5060), (17, B, A, 5060, 40000), 0.0)
    assert f.feed(sip, 0, RRQ, 0.0) is None and seen == [5060]
    # a TCP flow to the UDP helper's port has no helper
    assert f.feed(Conn((6, A, B, 1, 5060), (6, B, A, 5060, 1), 0.0), 0, b"x", 0.0) is None
    assert seen == [5060]
    with pytest.raises(ValueError):
        Expectations((fake._replace(policy=ExpectPolicy(2, 60.0)),))


def test_expectation_lives_for_its_helper_policy():
    ctl = Conn((6, A, B, 40000, 21), (6, B, A, 21, 40000), 0.0)
    ctl.status |= IPS_SEEN_REPLY
    f = HelperFollower(names=["ftp"])
    exp = f.feed(ctl, 0, b"PORT 192,0,2,1,39,17\r\n", 10.0)
    assert exp is not None and exp.timeout == ftp.POLICY.timeout and exp.expires == 310.0


def test_adopt_a_primed_expectation():
    """A prime's expectation takes its master's slot with the helper's policy timeout,
    unless it ran out or a sniffed one newer than the snapshot holds the slot."""
    master = (6, A, B, 40000, ftp.FTP_PORT)
    data = (6, B, A, 0, 50000)
    mask = (6, b"\xff" * 4, b"\xff" * 4, 0, 0xFFFF)
    f = HelperFollower()
    exp = f.adopt(master, data, mask, remaining=100.0, taken_at=1000.0, now=1010.0)
    assert exp is not None and exp.kind == "prime" and exp.expires == 1100.0
    assert exp.timeout == ftp.POLICY.timeout and f.by_master[master] is exp
    assert f.on_new(Conn((6, B, A, 40001, 50000), (6, A, B, 50000, 40001), 0.0)) == exp
    assert f.adopt(master, data, mask, remaining=5.0, taken_at=1000.0, now=1010.0) is None
    sniffed = Expectation(master, data, mask, 1001.0, "227")
    f.by_master[master] = sniffed
    assert f.adopt(master, data, mask, remaining=200.0, taken_at=1000.0, now=1010.0) is None
    assert f.by_master[master] is sniffed
