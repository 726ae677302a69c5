"""`sniffover replay`: capture formats, errors as one line, output modes.

The table contents are judged against the kernel in test_golden; here the
captures are synthetic and the checks are about plumbing: the same packets give
the same table whatever the container (pcap, pcapng, split files, link type).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from sniffover.cli import main
from sniffover.replay import replay
from tests.helpers import syn_opts

A, B = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1])
MAC1, MAC2 = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
T0 = 1_700_000_000.0


def _ip_tcp(src, dst, sport, dport, flags, seq, ack, data=b"", opts=b""):
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=502)
    seg.opts = opts
    seg.off = (20 + len(opts)) // 4
    seg.data = data
    ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, data=seg)
    ip.len = len(ip)
    return bytes(ip)


def _ip_udp(src, dst, sport, dport, data=b"q"):
    ip = dpkt.ip.IP(src=src, dst=dst, p=17, ttl=64, data=dpkt.udp.UDP(sport=sport, dport=dport))
    ip.data.data = data
    ip.data.ulen = 8 + len(data)
    ip.len = len(ip)
    return bytes(ip)


def conversation() -> list[tuple[float, bytes]]:
    """A TCP handshake + data, a UDP query/answer and a stray ARP, as IP packets."""
    c, s = 1000, 5000
    pkts = [
        _ip_tcp(A, B, 40000, 80, 0x02, c, 0, opts=syn_opts()),
        _ip_tcp(B, A, 80, 40000, 0x12, s, c + 1, opts=syn_opts()),
        _ip_tcp(A, B, 40000, 80, 0x10, c + 1, s + 1),
        _ip_tcp(A, B, 40000, 80, 0x18, c + 1, s + 1, data=b"GET /\r\n"),
        _ip_tcp(B, A, 80, 40000, 0x18, s + 1, c + 8, data=b"hello"),
        _ip_udp(A, B, 50000, 53),
        _ip_udp(B, A, 53, 50000),
    ]
    return [(T0 + i * 0.1, p) for i, p in enumerate(pkts)]


def write_pcap(path, frames, linktype=1, ng=False):
    with open(path, "wb") as f:
        w = (dpkt.pcapng.Writer if ng else dpkt.pcap.Writer)(f, linktype=linktype)
        for ts, frame in frames:
            w.writepkt(frame, ts=ts)
    return str(path)


def eth(ip: bytes) -> bytes:
    return MAC1 + MAC2 + (b"\x08\x00" if ip[0] >> 4 == 4 else b"\x86\xdd") + ip


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_same_table_from_pcap_pcapng_split_and_link_types(tmp_path, capsys):
    conv = conversation()
    ether = [(ts, eth(p)) for ts, p in conv] + [(T0 + 1, MAC1 + MAC2 + b"\x08\x06" + b"\0" * 28)]
    outputs = []
    for args in (
        [write_pcap(tmp_path / "a.pcap", ether)],
        [write_pcap(tmp_path / "a.pcapng", ether, ng=True)],
        [write_pcap(tmp_path / "p1.pcap", ether[:3]), write_pcap(tmp_path / "p2.pcap", ether[3:])],
        [write_pcap(tmp_path / "raw.pcap", conv, linktype=101)],
    ):
        code, out, err = run(capsys, "replay", *args, "--at", str(T0 + 2))
        assert code == 0 and err == ""
        outputs.append(out)
    assert outputs[0].count("\n") == 2
    assert all(o == outputs[0] for o in outputs), outputs
    lines = sorted(outputs[0].splitlines())
    assert (
        lines[0].startswith("tcp      6 ")
        and "src=192.0.2.1 dst=198.51.100.1 sport=40000" in lines[0]
    )
    assert lines[1].startswith("udp      17 ")


def test_output_matches_library_result(tmp_path, capsys):
    path = write_pcap(tmp_path / "a.pcap", [(ts, eth(p)) for ts, p in conversation()])
    result = replay([path])
    code, out, _ = run(capsys, "replay", path, "--json", "--stats")
    doc = json.loads(out)
    assert code == 0 and len(doc["entries"]) == len(result.entries()) == 2
    stats = doc["stats"]
    assert stats["packets"] == 7 and stats["decoded"] == 7 and stats["flows_created"] == 2
    code, out, _ = run(capsys, "replay", path, "-o", "extended")
    assert out.startswith("ipv4     2 ")


def test_skipped_frames_are_counted_by_reason(tmp_path, capsys):
    frames = [(T0, MAC1 + MAC2 + b"\x08\x00" + b"\x45\x00"), (T0 + 1, b"\x01\x02")]
    frames += [(T0 + 2, eth(p)) for _, p in conversation()[:1]]
    path = write_pcap(tmp_path / "bad.pcap", frames)
    code, out, err = run(capsys, "replay", path, "--stats")
    assert code == 0 and out.count("\n") == 1
    stats = json.loads(err)
    assert stats["skipped"] == {"truncated-ip": 1, "truncated-link": 1}
    assert stats["packets"] == 3


@pytest.mark.parametrize(
    "content,needle",
    [
        (None, "no such file"),
        (b"not a capture at all" * 3, "cannot read capture"),
        ("dir", "is a directory"),
    ],
)
def test_bad_files_give_one_line_and_exit_1(tmp_path, capsys, content, needle):
    path = tmp_path / "x.pcap"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    code, out, err = run(capsys, "replay", str(path))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("sniffover: ") and needle in err


def test_truncated_capture_is_an_error_not_a_traceback(tmp_path, capsys):
    path = write_pcap(tmp_path / "t.pcap", [(ts, eth(p)) for ts, p in conversation()])
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-20])  # the last record is cut in the middle
    code, _, err = run(capsys, "replay", path)
    assert code == 1 and err.count("\n") == 1 and "t.pcap" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--at", "soon", "x.pcap"])
    assert exc.value.code == 2
    assert main([]) == 2


def test_console_script_runs(tmp_path):
    path = write_pcap(tmp_path / "a.pcap", [(ts, eth(p)) for ts, p in conversation()])
    proc = subprocess.run(
        [sys.executable, "-m", "sniffover.cli", "replay", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.count("\n") == 2, proc.stderr


def test_vlan_and_sll_give_the_same_table(tmp_path, capsys):
    conv = conversation()
    tagged = [
        (ts, MAC1 + MAC2 + struct.pack("!HH", 0x8100, 100) + b"\x08\x00" + p) for ts, p in conv
    ]
    sll = [(ts, struct.pack("!HHH", 0, 1, 6) + MAC1 + b"\0\0\x08\x00" + p) for ts, p in conv]
    a = run(capsys, "replay", write_pcap(tmp_path / "v.pcap", tagged))[1]
    b = run(capsys, "replay", write_pcap(tmp_path / "s.pcap", sll, linktype=113))[1]
    c = run(capsys, "replay", write_pcap(tmp_path / "e.pcap", [(ts, eth(p)) for ts, p in conv]))[1]
    assert a == b == c and a.count("\n") == 2
