"""Remote mirror decapsulation (capture/decap.py): each tunnel's layout against a second
reading from the spec (tests/tunnels.py, with dpkt's GRE parser) and tcpdump's, the
selectors, bare traffic on a mirror port, sequence gaps as tunnel drops (and the agent's
re-prime after them), the outer BPF filter and the option checks."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pcapy  # type: ignore[import-untyped]
import pytest

from sniffover.agent.config import AgentConfig
from sniffover.agent.daemon import Agent
from sniffover.capture.decap import Decapsulator, decap_options, outer_bpf
from sniffover.capture.decode import Decoder
from sniffover.capture.headers import LINKTYPE_ETHERNET, LINKTYPE_RAW
from sniffover.cli import main
from tests.helpers import A, B
from tests.tunnels import (
    KINDS,
    MIRROR_SRC,
    MIRROR_SRC6,
    outer,
    ref_inner,
    write_pcap,
)
from tests.unit.test_agent_parts import (
    FakeCapture,
    FakeClock,
    FakeControl,
    FakeSock,
    Pulls,
    wait_pull,
)

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def tcp_frame(sport: int = 40000, vlan: int | None = None) -> bytes:
    """An Ethernet frame with a TCP SYN from A to B (optionally 802.1Q-tagged)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, A, B)
    tcp = struct.pack("!HHIIBBHHH", sport, 80, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return MAC_B + MAC_A + tag + b"\x08\x00" + ip + tcp


def mode_of(kind: str) -> str:
    return {"vxlan": "vxlan", "tzsp": "tzsp", "gre": "gre"}.get(kind, "erspan")


def batch(frames: list[bytes]) -> tuple[bytes, bytes]:
    """A next_batch() result: frames back to back, 16-byte native records."""
    data = b""
    meta = b""
    for i, f in enumerate(frames):
        meta += struct.pack("=IIII", 1_700_000_000 + i, 0, len(data), len(f))
        data += f
    return data, meta


# --- the layouts ---------------------------------------------------------------------------


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_inner_frame_where_the_spec_puts_it(kind: str, v6: bool) -> None:
    inner = tcp_frame(vlan=42)
    frame = outer(kind, inner, seq=3, session=513, v6=v6)
    ref = ref_inner(frame)
    assert ref is not None and ref[0] == kind.rstrip("o")
    d = Decapsulator(mode_of(kind))
    off = d.inner(frame, 0, len(frame))
    assert off == ref[2] and frame[off:] == inner
    # the session the spec reads is the one the selector sees (none for ERSPAN I, TZSP)
    if ref[1] >= 0:
        assert Decapsulator("auto", sessions=[ref[1]]).inner(frame, 0, len(frame)) == off
        other = Decapsulator("auto", sessions=[ref[1] + 1])
        assert other.inner(frame, 0, len(frame)) == -1
        assert other.skipped == Counter({"mirror-foreign-session": 1})
    # and the decoder reads the mirrored packet, inner VLAN tag included
    pkt = Decoder(LINKTYPE_ETHERNET).decode_at(0.0, frame, off, len(frame))
    assert pkt is not None and (pkt.src, pkt.dst, pkt.sport, pkt.vlan) == (A, B, 40000, 42)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="no tcpdump")
@pytest.mark.parametrize("kind", ["vxlan", "gre"])
def test_tcpdump_reads_the_same_inner_packet(kind: str, tmp_path: Path) -> None:
    """tcpdump's own VXLAN and GRE-TEB printers see the inner TCP segment we built."""
    path = tmp_path / "t.pcap"
    write_pcap(path, [(1.0, outer(kind, tcp_frame(), session=7))])
    proc = subprocess.run(  # on stdin: tcpdump drops to its own user before opening a file
        ["tcpdump", "-nr", "-"], input=path.read_bytes(), capture_output=True
    )
    if b"Couldn't change to" in proc.stderr:  # an earlier test left this process without
        pytest.skip("tcpdump cannot switch to its user here (capabilities dropped)")  # CAP_SETUID
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "192.0.2.1.40000 > 198.51.100.1.80: Flags [S]" in out.replace("\n", " "), out


def test_every_truncation_is_counted_never_raises() -> None:
    for kind in KINDS:
        frame = outer(kind, tcp_frame(), seq=1, session=1)
        full = Decapsulator("auto").inner(frame, 0, len(frame))
        for cut in range(len(frame)):
            d = Decapsulator("auto")
            got = d.inner(frame, 0, cut)
            # cut inside the inner frame's first 14 bytes or before: dropped, counted
            assert (got == full) if cut >= full + 14 else (got == -1 and sum(d.skipped.values()))


def test_outer_linktypes_raw_ip() -> None:
    frame = outer("vxlan", tcp_frame(), session=5)[14:]  # as captured on a raw IP tunnel end
    d = Decapsulator("vxlan", linktype=LINKTYPE_RAW)
    assert frame[d.inner(frame, 0, len(frame)) :] == tcp_frame()
    with pytest.raises(ValueError):
        Decapsulator("vxlan", linktype=105)  # 802.11: no


def test_vxlan_port_configurable_and_i_flag_required() -> None:
    frame = bytearray(outer("vxlan", tcp_frame()))
    frame[36:38] = struct.pack("!H", 8472)  # Linux's old default port
    assert Decapsulator("vxlan").inner(bytes(frame), 0, len(frame)) == -1
    assert Decapsulator("vxlan", vxlan_ports=[8472]).inner(bytes(frame), 0, len(frame)) == 50
    frame[42] = 0  # no I flag: no VNI
    d = Decapsulator("vxlan", vxlan_ports=[8472])
    assert d.inner(bytes(frame), 0, len(frame)) == -1 and d.skipped["decap-bad-header"] == 1


# --- what is not the mirror ---------------------------------------------------------------


def test_bare_traffic_on_a_mirror_port_is_counted_and_dropped() -> None:
    """--decap set, a frame not in the tunnel (the port's own traffic, another host's):
    it never reaches the tracker, whatever it carries."""
    for mode in ("auto", "vxlan", "erspan", "gre", "tzsp"):
        d = Decapsulator(mode)
        data, meta = batch([tcp_frame(), tcp_frame(vlan=7)])
        assert d.batch(data, meta) == b""
        assert d.skipped == Counter({"not-mirrored": 2})


def test_decap_mode_reads_only_its_tunnel() -> None:
    frames = {k: outer(k, tcp_frame(), seq=1, session=1) for k in KINDS}
    for mode, kinds in {
        "vxlan": {"vxlan"},
        "tzsp": {"tzsp"},
        "gre": {"gre"},
        "erspan": {"erspan1", "erspan2", "erspan3", "erspan3o"},
        "auto": set(KINDS),
    }.items():
        for kind, frame in frames.items():
            got = Decapsulator(mode).inner(frame, 0, len(frame))
            assert (got > 0) == (kind in kinds), (mode, kind)


def test_selectors_by_source_and_session() -> None:
    mine = outer("erspan2", tcp_frame(1), seq=1, session=9)
    other_session = outer("erspan2", tcp_frame(2), seq=1, session=10)
    other_source = outer("erspan2", tcp_frame(3), seq=1, session=9, src=bytes([192, 0, 2, 99]))
    v6 = outer("vxlan", tcp_frame(4), session=9, v6=True)
    d = Decapsulator("auto", sessions=[9], sources=[MIRROR_SRC, MIRROR_SRC6])
    data, meta = batch([mine, other_session, other_source, v6])
    kept = d.batch(data, meta)
    assert len(kept) == 32
    assert d.skipped == Counter({"mirror-foreign-session": 1, "mirror-foreign-source": 1})
    pkts = Decoder(LINKTYPE_ETHERNET).decode_batch(data, kept)
    assert [p.sport for p in pkts] == [1, 4]


def test_erspan_ii_iii_non_ethernet_or_bad_version() -> None:
    frame = bytearray(outer("erspan3", tcp_frame(), seq=1))
    frame[34 + 8 + 10] |= 2 << 2  # FT = 2: an IP packet, not a frame
    d = Decapsulator("erspan")
    assert d.inner(bytes(frame), 0, len(frame)) == -1 and d.skipped["decap-not-ethernet"]
    frame = bytearray(outer("erspan2", tcp_frame(), seq=1))
    frame[34 + 8] = 0x20  # version 2 under the type II protocol number
    d = Decapsulator("erspan")
    assert d.inner(bytes(frame), 0, len(frame)) == -1 and d.skipped["decap-bad-header"]


# --- tunnel drops ---------------------------------------------------------------------------


def test_sequence_gaps_are_tunnel_drops_per_session() -> None:
    d = Decapsulator("auto")

    def feed(kind: str, seq: int, session: int = 1) -> None:
        f = outer(kind, tcp_frame(), seq=seq, session=session)
        assert d.inner(f, 0, len(f)) > 0

    for seq in (1, 2, 5):  # 3 and 4 lost
        feed("erspan2", seq)
    assert d.tunnel_dropped == 2
    feed("erspan2", 4)  # late (reordered): not a drop, not a new high mark
    feed("erspan2", 5)  # duplicate
    feed("erspan2", 6)
    assert d.tunnel_dropped == 2
    feed("erspan3", 100, session=2)  # another session: its own numbers
    feed("erspan3", 101, session=2)
    feed("erspan2", 0xFFFFFFFF, session=3)
    feed("erspan2", 0, session=3)  # wraps around: no loss
    assert d.tunnel_dropped == 2
    for _ in range(3):
        feed("vxlan", 0)  # VXLAN has no sequence numbers
    assert d.tunnel_dropped == 2


class DecapCapture(FakeCapture):
    def __init__(self, iface: str, bpf: str, snaplen: int) -> None:
        super().__init__(iface, bpf)
        self.decoder.linktype = LINKTYPE_ETHERNET  # type: ignore[attr-defined]
        self.snaplen = snaplen
        self.decap: Decapsulator | None = None

    def set_decap(self, decap: Decapsulator) -> None:
        self.decap = decap


def test_tunnel_drops_reprime_like_capture_drops() -> None:
    fc = FakeClock()
    pulls = Pulls([], [], [])
    opened: list[DecapCapture] = []

    def open_capture(iface: str, snaplen: int, ring: int, bpf: str) -> DecapCapture:
        opened.append(DecapCapture(iface, bpf, snaplen))
        return opened[-1]

    cfg = AgentConfig(ifaces=["mir0"], confirm="off", prime_from="master", decap="erspan",
                      mirror_from=["192.0.2.10"], snaplen=256, drop_privileges=False)  # fmt: skip
    agent = Agent(cfg, clock=fc.clock(), ctnl_socket=FakeSock, open_capture=open_capture,  # type: ignore[arg-type]
                  control_server=FakeControl, fetch=pulls)  # type: ignore[arg-type]  # fmt: skip
    agent.start()
    wait_pull(agent)
    cap = opened[0]
    # the mirror's filter and snap length: the tunnel only, room for its headers
    assert "ip proto 47" in cap.filters[0] and "src host" not in cap.filters[0]
    assert cap.snaplen == 256 + 128
    assert cap.decap is not None and cap.decap.sources == {MIRROR_SRC}
    agent.tick()
    assert pulls.calls == 1
    frames = [outer("erspan2", tcp_frame(), seq=s) for s in (1, 2, 9)]
    cap.decap.batch(*batch(frames))
    agent.tick()
    assert agent.captures.drops()["mir0"]["tunnel_dropped"] == 6
    assert pulls.calls == 2  # the re-prime after drops


# --- the outer filter and the options ------------------------------------------------------


def test_outer_bpf_passes_the_tunnel_only() -> None:
    flt = pcapy.compile(LINKTYPE_ETHERNET, 65535, outer_bpf("auto", (4789,)), 1, 0)
    for kind in KINDS:
        assert flt.filter(outer(kind, tcp_frame(), seq=1)), kind
        # any sender: one not selected is counted in Python, not lost in the kernel
        assert flt.filter(outer(kind, tcp_frame(), seq=1, src=bytes([192, 0, 2, 99])))
    assert not flt.filter(tcp_frame())
    vx = pcapy.compile(LINKTYPE_ETHERNET, 65535, outer_bpf("vxlan", (4789,)), 1, 0)
    assert vx.filter(outer("vxlan", tcp_frame())) and not vx.filter(outer("gre", tcp_frame()))


def test_decap_options() -> None:
    assert decap_options("none") is None
    got = decap_options("vxlan", 4790, ["0x10", "7"], ["192.0.2.10", "2001:db8::10"])
    assert got == {"mode": "vxlan", "vxlan_ports": (4790,), "sessions": [16, 7],
                   "sources": [MIRROR_SRC, MIRROR_SRC6]}  # fmt: skip
    for bad in (("none", 4789, ["1"], []), ("vxlan", 4789, ["x"], []), ("vxlan", 4789, [], ["h"])):
        with pytest.raises(ValueError):
            decap_options(*bad)


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--decap", "vxlan", "--prefilter", "control"], "cannot look inside"),
        (["--mirror-session", "3"], "give --decap"),
        (["--decap", "ipip"], "--decap: must be"),
        (["--decap", "vxlan", "--mirror-from", "nowhere"], "--mirror-from: must be an IP"),
        (["--decap", "vxlan", "--vxlan-port", "0"], "--vxlan-port: must be"),
    ],
)
def test_bad_decap_options_one_line_exit_2(argv: list[str], text: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc_info:
        rc = main(["--iface", "lo", "--confirm", "off", *argv])
        raise SystemExit(rc)
    err = capsys.readouterr().err
    assert exc_info.value.code == 2 and text in err and len(err.strip().splitlines()) <= 2, err


def test_replay_decap_bad_options_one_line(capsys: Any) -> None:
    assert main(["replay", "--mirror-from", "192.0.2.1", "x.pcap"]) == 2
    assert "give --decap" in capsys.readouterr().err


# --- a forger without a selector: the confirmation rules see the inner frames -------------


@pytest.mark.parametrize("from_master", [False, True])
def test_forged_vxlan_inner_frames_meet_the_mac_confirmation(from_master: bool) -> None:
    """No --mirror-from: anyone may send VXLAN to the standby. The inner frames' MACs are
    what forwarding confirmation judges: a forged handshake between two hosts' MACs (or
    the master's as destination only) proves nothing and confirms no entry; the control,
    the same exchange with the reply leaving the master's MAC, does."""
    from sniffover.conntrack.confirm import ForwardingConfirmer
    from sniffover.conntrack.table import ConntrackTable

    master = bytes.fromhex("02000000feed")

    def seg(
        src: bytes, dst: bytes, smac: bytes, dmac: bytes, flags: int, sp: int, dp: int
    ) -> bytes:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 7, 0, 64, 6, 0, src, dst)
        tcp = struct.pack("!HHIIBBHHH", sp, dp, 1000 if flags == 2 else 5000, 1001, 5 << 4,
                          flags, 65535, 0, 0)  # fmt: skip
        return dmac + smac + b"\x08\x00" + ip + tcp

    reply_mac = master if from_master else MAC_B
    forger = bytes([203, 0, 113, 66])
    frames = [
        outer("vxlan", seg(A, B, MAC_A, master, 0x02, 40000, 80), session=1, src=forger),
        outer("vxlan", seg(B, A, reply_mac, MAC_A, 0x12, 80, 40000), session=1, src=forger),
    ]
    d = Decapsulator("vxlan")
    data, meta = batch(frames)
    dec = Decoder(LINKTYPE_ETHERNET)
    dec.master = frozenset([master])
    table = ConntrackTable()
    cf = ForwardingConfirmer(table, two_segments=False)
    cf.master_learned(0.0)
    for p in dec.decode_batch(data, d.batch(data, meta)):
        cf.feed(p)
    conns = table.entries(1_700_000_002)
    assert len(conns) == 1 and conns[0].forwarded is from_master


def test_batch_inline_vxlan_equals_the_frame_walk() -> None:
    """batch()'s inline VXLAN test and inner() agree on every frame, kept or counted."""
    frames = [
        outer("vxlan", tcp_frame(1), session=7),
        outer("vxlan", tcp_frame(2), session=8),
        outer("vxlan", tcp_frame(3), session=7, src=bytes([192, 0, 2, 99])),
        outer("vxlan", tcp_frame(4, vlan=5), session=7)[:63],  # cut short
        outer("vxlan", tcp_frame(5, vlan=5), session=7),
        outer("erspan2", tcp_frame(6), seq=1, session=7),
        tcp_frame(7),
    ]
    data, meta = batch(frames)
    for kw in (
        {},
        {"sessions": [7]},
        {"sessions": [7, 8]},
        {"sources": [MIRROR_SRC]},
        {"sources": [MIRROR_SRC, MIRROR_SRC6], "sessions": [7]},
        {"vxlan_ports": [4790]},
        {"vxlan_ports": [4789, 4790]},
    ):
        fast, slow = Decapsulator("auto", **kw), Decapsulator("auto", **kw)  # type: ignore[arg-type]
        kept = fast.batch(data, meta)
        want = b""
        for i, f in enumerate(frames):
            start = sum(len(x) for x in frames[:i])
            got = slow.inner(data, start, start + len(f))
            if got >= 0:
                want += meta[16 * i : 16 * i + 8] + struct.pack("=II", got, start + len(f) - got)
        assert kept == want and fast.skipped == slow.skipped, kw
        assert fast.decapsulated == slow.decapsulated


def test_decap_options_from_toml_and_command_line(tmp_path: Path) -> None:
    from sniffover.agent.config import agent_config, merged_options
    from sniffover.cli import build_parser
    from sniffover.conntrack.timeouts import Timeouts

    conf = tmp_path / "s.toml"
    conf.write_text('decap = "vxlan"\nvxlan-port = 4790\nmirror_session = ["100", "0x65"]\n'
                    'mirror_from = "192.0.2.10"\n')  # fmt: skip
    args = build_parser().parse_args(["-i", "mir0", "--config", str(conf)])
    cfg = agent_config(merged_options(args), Timeouts())
    assert (cfg.decap, cfg.vxlan_port, cfg.mirror_sessions, cfg.mirror_from) == (
        "vxlan", 4790, ["100", "0x65"], ["192.0.2.10"],
    )  # fmt: skip
    args = build_parser().parse_args(["-i", "m", "--config", str(conf), "--decap", "erspan",
                                      "--mirror-from", "2001:db8::10"])  # fmt: skip
    cfg = agent_config(merged_options(args), Timeouts())
    assert cfg.decap == "erspan" and cfg.mirror_from == ["2001:db8::10"]
    assert AgentConfig(ifaces=["x"]).decap == "none"  # default: no tunnel is read


def test_mirror_port_anchors_the_master_from_mirrored_arp_without_probing() -> None:
    """On a mirror port the ARP anchor reads the mirrored frames (the master's ARP answers
    inside the tunnel); it sends no ARP of its own there and does not judge routed traffic
    by the tunnel port's subnets."""
    from sniffover.agent.captures import CaptureSet
    from sniffover.agent.learning import MasterLearning

    master, master_ip = bytes.fromhex("02000000feed"), bytes([192, 0, 2, 254])
    arp = (MAC_A + master + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2)
           + master + master_ip + MAC_A + A)  # fmt: skip
    learning = MasterLearning([], confirm=True, addrs=[master_ip])
    opened: list[DecapCapture] = []

    def open_capture(iface: str, snaplen: int, ring: int, bpf: str) -> DecapCapture:
        opened.append(DecapCapture(iface, bpf, snaplen))
        return opened[-1]

    def no_prober(*a: Any) -> Any:
        raise AssertionError("no ARP is sent on a mirror port")

    learning.open_prober = no_prober
    cfg = AgentConfig(ifaces=["mir0"], decap="vxlan", master_addrs=["192.0.2.254"])
    lan = [ipaddress.ip_network("192.0.2.0/24")]
    caps = CaptureSet(cfg, learning, Counter(), open_capture,  # type: ignore[arg-type]
                      own_macs=lambda: [], nets=lambda i: lan)  # fmt: skip
    caps.open(0.0)
    cap = opened[0]
    assert cap.learner is not None and cap.learner.nets == [] and not learning.probers
    assert cap.decap is not None
    # mirrored answers two seconds apart (anchors.SETTLE), a bare one between them
    data, meta = batch([outer("vxlan", arp), arp, outer("vxlan", arp)])
    kept = cap.decap.batch(data, meta)
    assert len(kept) == 32
    assert cap.learner.feed(data, kept) == master
    assert cap.decap.batch(*batch([arp, arp, arp])) == b""  # bare answers never reach it


@pytest.mark.parametrize("tpid", [0x8100, 0x88A8, 0x9100])
def test_tagged_outer_frame(tpid: int) -> None:
    """The tunnel itself on a VLAN (a tagged mirror port): the tags before the outer IP
    header are walked, and the kernel filter's "vlan" branch passes it."""
    frame = outer("erspan2", tcp_frame(vlan=9), seq=1, session=3)
    tagged = frame[:12] + struct.pack("!HH", tpid, 77) + frame[12:]
    d = Decapsulator("erspan", sessions=[3])
    off = d.inner(tagged, 0, len(tagged))
    assert off == ref_inner(frame)[2] + 4 and tagged[off:] == tcp_frame(vlan=9)  # type: ignore[index]
    if tpid == 0x8100:
        flt = pcapy.compile(LINKTYPE_ETHERNET, 65535, outer_bpf("erspan", (4789,)), 1, 0)
        assert flt.filter(tagged)
