"""The standby agent: sniff -> track -> install, until the cluster manager promotes us.

One select() loop, no threads: capture handles, the control socket and a 50 ms
tick. Packets are tracked as they are read; changed entries are flushed to the
kernel every ``flush_interval`` (20 ms by default) in batches, so the lag from
wire to kernel table stays in tens of milliseconds. Once a second expired
entries are swept and kernel timers that would run out are re-armed.

Promotion (SIGUSR1 or ``sniffover ctl promote``): read whatever the capture
rings still hold, install everything the tracker knows, answer, and stand down
(captures closed: the kernel now tracks the live traffic itself). Demotion
(SIGUSR2 or ``ctl demote``) starts standby duty again with an empty tracker;
mid-stream pickup (and a prime) rebuild it.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import logging
import os
import select
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from ..capture.bpf import exclude_self_filter, mac_bytes, mac_text, prefilter_bpf
from ..capture.files import CaptureError
from ..capture.live import LiveCapture
from ..conntrack.confirm import ForwardingConfirmer
from ..conntrack.entry import Conn
from ..conntrack.helpers import HELPER_PORTS, HelperFollower
from ..conntrack.helpers.ftp import FTP_PORT, FtpFollower
from ..conntrack.packet import HW_TO_MASTER, Packet
from ..conntrack.table import ConntrackTable
from ..conntrack.timeouts import Timeouts
from ..kernel.ctnetlink import CtnlSocket, NetlinkError
from ..kernel.expect import ExpectInstaller
from ..kernel.installer import Installer
from .control import ControlServer
from .learning import MasterLearner, local_macs, local_prefixes

log = logging.getLogger("sniffover.agent")

TICK = 0.05
# Conntrack entries live long and form no reference cycles: every GC_FREEZE_EVERY seconds
# what survived the young generations moves to the collector's permanent generation, so a
# full collection never walks the whole table while the capture rings fill (measured: a
# 100k-entry flush ran at 116,000 entries/s with the default collector, 166,000 with this).
# Frozen objects are still freed by reference counting when the tracker lets them go.
GC_FREEZE_EVERY = 10.0
# Two segments: each interface's capture ring hands frames over on its own timer, so the
# copy of a packet leaving the master can be read before the copy that entered it. Frames
# wait this long and are then tracked in timestamp order across interfaces.
REORDER = 0.02
PRIME_BUFFER_MAX = 2_000_000  # packets held while the first pull runs
PRIME_RETRY = 30.0  # seconds between automatic pulls after a failure
PRIME_AFTER_DROPS = 60.0  # at most one automatic re-prime this often after capture drops


def settle_gc(collect: bool = True) -> None:
    """Collect the young generations, then freeze every survivor (see GC_FREEZE_EVERY).
    After a prime, ``collect=False``: its entries are acyclic, and walking them would cost
    ~1 us each."""
    if collect:
        gc.collect(1)
    gc.freeze()


@dataclass
class AgentConfig:
    ifaces: list[str]
    timeouts: Timeouts = field(default_factory=Timeouts)
    control: str | None = None
    zone: int = 0
    mark: int | None = None
    flush_interval: float = 0.02
    install: bool = True
    snaplen: int = 256  # headers + an FTP control line (conntrack.ftp)
    ring_mb: int = 32
    exclude_self: bool = True
    bpf: str = ""
    stats_interval: float = 60.0
    pickup: bool = True
    prefilter: bool = False  # --prefilter control: only control segments + a sample reach Python
    pickup_sample: int = 16
    warmup: float = 30.0  # seconds of full capture before the prefilter applies
    prime_from: str | None = None  # HOST[:PORT] | ssh://[user@]HOST | FILE
    key_file: str | None = None
    prime_required: bool = False
    prime_timeout: float = 10.0
    reprime_after_drops: bool = True
    max_flows: int | None = None  # bound of the tracker's table (early drop beyond it)
    drop_privileges: bool = True  # keep only CAP_NET_ADMIN + CAP_NET_RAW once sockets are open
    user: str | None = None  # and run as this user
    metrics_listen: str | None = None
    confirm: str = "auto"  # forwarding confirmation: auto | mac | both | off
    master_macs: list[str] = field(default_factory=list)  # configured; else learned
    ftp: bool = True  # FTP control entries get the kernel's ftp helper, expectations follow
    tftp: bool = True  # TFTP requests (UDP to 69) likewise, with the tftp helper


def _learner(c: LiveCapture) -> MasterLearner | None:
    """The learner the agent hooked into this capture (the handle knows only its feed())."""
    return cast("MasterLearner | None", c.learner)


def _ts(p: Packet) -> float:
    return p.ts


class RateLimited:
    """At most one log line per key per ``period``; says how many were suppressed."""

    def __init__(self, logger: logging.Logger, period: float = 10.0) -> None:
        self.logger = logger
        self.period = period
        self.last: dict[str, float] = {}
        self.suppressed: Counter[str] = Counter()

    def __call__(self, key: str, level: int, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last.get(key, -1e9) < self.period:
            self.suppressed[key] += 1
            return
        n = self.suppressed.pop(key, 0)
        self.last[key] = now
        self.logger.log(level, msg + (f" (+{n} similar suppressed)" if n else ""), *args)


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.stop = False
        self.want_promote = False
        self.want_demote = False
        self.active = False  # promoted: standing down
        self.captures: list[LiveCapture] = []
        self.lost: dict[str, Counter[str]] = {}  # interfaces to reopen -> their skip counters
        self.bpf = self.bpf_full = self.bpf_pre = ""
        self.prefilter_at: float | None = None
        self.counters: Counter[str] = Counter()
        self.started = time.time()
        self.last_packet = 0.0
        self.packets = 0
        self.ratelog = RateLimited(log)
        timeouts = cfg.timeouts
        if cfg.pickup:
            timeouts.tcp_loose = 1  # we mirror the master, whatever our own kernel's setting
        if cfg.prefilter:
            timeouts.tcp_be_liberal = 1  # most segments are filtered out: windows are unknowable
        self.timeouts = timeouts
        self.sock: CtnlSocket | None = None
        if cfg.install:
            self.sock = CtnlSocket()
            self._check_ctnetlink()
        self.installer: Installer | None = None
        self.confirmer: ForwardingConfirmer | None = None
        self.ftp: FtpFollower | None = None
        self.expect: ExpectInstaller | None = None
        self.master: set[bytes] = {mac_bytes(m) for m in cfg.master_macs}
        self.ingress_keys: set[tuple[int, ...]] = set()
        self.reorder: dict[LiveCapture, list[Packet]] = {}
        self.confirm_later: list[tuple[int, bytes, bytes, int, int]] = []
        self.reordering = len(cfg.ifaces) >= 2
        self.table = self._new_table()
        self.control = ControlServer(cfg.control)
        # Priming: None = not asked for; False = asked, not (yet) done; True = done.
        self.primed: bool | None = False if cfg.prime_from else None
        self.prime_thread: threading.Thread | None = None
        self.prime_result: Any = None  # a Snapshot or the exception the pull raised
        self.prime_buffer: list[Packet] | None = None  # packets held while the first pull runs
        self.prime_stage: Any = None  # the PrimeStage the running pull fills
        self.prime_next: float | None = None  # monotonic time of the next automatic pull
        self.prime_info: dict[str, Any] = {}
        self.drops_seen = 0
        self.last_drop_prime = -1e9  # monotonic time of the last re-prime after drops
        self.packets_primed = 0  # successful pulls
        self.fatal: str | None = None
        self.metrics: Any = None

    def _new_table(self) -> ConntrackTable:
        confirm = self.cfg.confirm != "off"
        if self.sock is not None:
            self.installer = Installer(
                self.sock,
                zone=self.cfg.zone,
                mark=self.cfg.mark,
                assume_handshake=self.cfg.prefilter,
                require_forwarded=confirm,
                ftp_helper=self.cfg.ftp,
                tftp_helper=self.cfg.tftp,
            )
            listener: Callable[[str, Conn], None] = self.installer.on_event
            if self.cfg.ftp or self.cfg.tftp:
                self.ftp = HelperFollower(self.cfg.ftp, self.cfg.tftp)
                self.expect = ExpectInstaller(self.sock, self.installer, self.cfg.zone)
                listener = self._ftp_listener(self.installer, self.ftp, self.expect)
            table = ConntrackTable(self.timeouts, listener=listener, max_entries=self.cfg.max_flows)
        else:
            table = ConntrackTable(self.timeouts, max_entries=self.cfg.max_flows)
        self.confirmer = None
        if confirm:
            two = self.cfg.confirm == "both" or (
                self.cfg.confirm == "auto" and len(self.cfg.ifaces) >= 2
            )
            self.confirmer = ForwardingConfirmer(table, two_segments=two)
            if self.cfg.master_macs:
                self.confirmer.master_learned(0.0)
        return table

    @staticmethod
    def _ftp_listener(
        inst: Installer, ftp: FtpFollower, expect: ExpectInstaller
    ) -> Callable[[str, Conn], None]:
        """Table events to the installer, and to the FTP expectations they consume or end."""
        on_event = inst.on_event

        def listener(kind: str, conn: Conn) -> None:
            on_event(kind, conn)
            if kind == "new":
                if ftp.by_master:
                    exp = ftp.on_new(conn)
                    if exp is not None:
                        expect.consumed(exp)
            elif kind == "destroy" and conn.orig[4] in HELPER_PORTS:
                ftp.on_destroy(conn)
                expect.master_gone(conn.orig)

        return listener

    def _ftp_segment(self, p: Packet) -> None:
        """An FTP control segment: the expectation the master's helper made of it."""
        assert self.ftp is not None
        found = self.table.get((p.proto, p.src, p.dst, p.sport, p.dport))
        if found is None:
            return
        exp = self.ftp.feed(found[0], found[1], p.payload, p.ts)
        if exp is not None and self.expect is not None:
            self.expect.add(exp)

    def _check_ctnetlink(self) -> None:
        """Fail at start, with one line, if we may not write the conntrack table."""
        from ..kernel.ctnetlink import encode_ct_delete

        assert self.sock is not None
        probe = (17, bytes([192, 0, 2, 0]), bytes([192, 0, 2, 0]), 0, 0)
        try:
            self.sock.request(encode_ct_delete(probe, seq=self.sock.next_seq()))
        except NetlinkError as exc:
            if exc.errno == 2:  # ENOENT: allowed to ask, nothing there
                return
            if exc.errno == 1:
                raise NetlinkError(
                    1, "ctnetlink: permission denied (needs CAP_NET_ADMIN)"
                ) from None
            raise

    # --- capture --------------------------------------------------------------------

    def open_captures(self) -> None:
        bpf = self.cfg.bpf
        if self.cfg.exclude_self:
            own = exclude_self_filter(local_macs())
            bpf = f"({bpf}) and {own}" if bpf and own else (bpf or own)
        self.bpf = self.bpf_full = bpf
        if self.cfg.prefilter:
            # Warm-up: everything for a while, so every active connection is picked up
            # mid-stream; then only control segments and a sample.
            pre = prefilter_bpf(self.cfg.pickup_sample)
            if self.cfg.ftp:  # FTP control lines pass whole (first: "vlan" shifts what follows)
                pre = f"(tcp port {FTP_PORT}) or {pre}"
            self.bpf_pre = f"({bpf}) and {pre}" if bpf else pre
            self.prefilter_at = time.monotonic() + self.cfg.warmup
        caps = []
        try:
            for iface in self.cfg.ifaces:
                caps.append(self._open_one(iface))
        except CaptureError:
            for c in caps:
                c.close()
            raise
        if self.cfg.prefilter:  # compile both filters now: a bad one is a start-up error
            for c in caps:
                c.set_filter(self.bpf_pre)
                c.set_filter(self.bpf_full)
        self.captures = caps
        log.info(
            "capturing on %s (promiscuous, snaplen %d, ring %d MiB)%s",
            ", ".join(self.cfg.ifaces),
            self.cfg.snaplen,
            self.cfg.ring_mb,
            f", filter: {bpf}" if bpf else "",
        )

    def close_captures(self) -> None:
        for c in self.captures:
            c.close()
        self.captures = []
        self.lost.clear()

    def _open_one(self, iface: str) -> LiveCapture:
        cap = LiveCapture(
            iface, snaplen=self.cfg.snaplen, ring_bytes=self.cfg.ring_mb << 20, bpf=self.bpf
        )
        if self.cfg.confirm != "off":
            cap.decoder.master = frozenset(self.master)
            if not self.cfg.master_macs:
                cap.learner = MasterLearner(local_prefixes(iface))
                cap.ingress_keys = self.ingress_keys
        return cap

    def _note_ingress(self, packets: list[Packet]) -> None:
        """Remember packets entering the master where it is known, so a segment where it is
        not can recognise their copies coming out (see MasterLearner.feed)."""
        keys = self.ingress_keys
        if len(keys) > 65536:
            keys.clear()
        new = [
            (p.proto, p.ipid, p.seq, p.ack, p.l4len)
            for p in packets
            if p.hw & HW_TO_MASTER and p.family == 2
        ]
        keys.update(new)
        for c in self.captures:
            ln = _learner(c)
            mac = ln.match(new) if ln is not None else None
            if mac is not None:
                c.decoder.master = c.decoder.master | {mac}

    def _learned(self) -> None:
        """Collect MACs the learners found; every decoder then flags the master's frames."""
        changed = False
        for c in self.captures:
            ln = _learner(c)
            if ln is not None and ln.learned is not None:
                if ln.learned not in self.master:
                    self.master.add(ln.learned)
                    changed = True
                    log.warning(
                        "master firewall on %s: %s (learned from routed traffic)",
                        c.iface,
                        mac_text(ln.learned),
                    )
                if self.confirmer is not None:
                    # flows it forwarded before we knew its MAC are proven all the same
                    # (again at the next tick: some may still wait in the reorder buffer)
                    before = ln.confirmed_before()
                    for t in before:
                        self.confirmer.confirm(t)
                    self.confirm_later += before
                c.learner = None
        if changed:
            master = frozenset(self.master)
            for c in self.captures:
                c.decoder.master = master
        # every segment must know the master before host-to-host frames can be told apart
        cf = self.confirmer
        if (
            cf is not None
            and self.master
            and not cf.master_known
            and all(c.learner is None for c in self.captures)
        ):
            # frames already read (decoded without the MACs, some still held for
            # reordering) keep being tracked: only later ones are judged by their MACs
            cf.master_learned(time.time())

    def _lost(self, cap: LiveCapture, why: str) -> None:
        """An interface went away or down: keep going on the others, reopen it later."""
        log.warning("%s; reopening it every second", why)
        cap.close()
        self.captures = [c for c in self.captures if c is not cap]
        self.lost[cap.iface] = cap.decoder.skipped
        self.counters["capture-lost"] += 1

    def _reopen_lost(self) -> None:
        for iface in list(self.lost):
            try:
                cap = self._open_one(iface)
            except CaptureError:
                continue
            cap.decoder.skipped = self.lost.pop(iface)
            self.captures.append(cap)
            self.counters["capture-reopened"] += 1
            log.warning("%s: capturing again", iface)

    def drops(self) -> dict[str, dict[str, int]]:
        out = {}
        for c in self.captures:
            recv, drop, ifdrop = c.stats()
            out[c.iface] = {
                "frames": c.frames,
                "received": recv,
                "dropped": drop,
                "ifdropped": ifdrop,
            }
        return out

    def _track(self, packets: list[Packet]) -> None:
        buf = self.prime_buffer
        if buf is not None:  # the first pull is running: apply these after its snapshot
            if len(buf) < PRIME_BUFFER_MAX:
                buf += packets
            else:
                self.counters["prime-buffer-overflow"] += len(packets)
            self.packets += len(packets)
            self.last_packet = packets[-1].ts
            return
        process = self.confirmer.feed if self.confirmer is not None else self.table.process
        if self.ftp is None:
            for p in packets:
                process(p)
        else:
            for p in packets:
                process(p)
                if p.payload:
                    self._ftp_segment(p)
        self.packets += len(packets)
        self.last_packet = packets[-1].ts

    def _release(self, cutoff: float) -> None:
        """Track the held frames of every interface up to ``cutoff``, in timestamp order."""
        parts = []
        for held in self.reorder.values():
            if held:
                i = bisect.bisect_right(held, cutoff, key=_ts)
                if i:
                    parts.append(held[:i])
                    del held[:i]
        if len(parts) == 1:
            self._track(parts[0])
        elif parts:
            self._track(list(heapq.merge(*parts, key=_ts)))

    def read_ready(self, ready: list[LiveCapture]) -> None:
        batches = []
        ready_read: list[LiveCapture] = []
        batches_all: list[list[Packet]] = []
        for c in ready:
            try:
                got = c.read()
            except CaptureError as exc:
                self._lost(c, str(exc))
                continue
            ready_read.append(c)
            batches_all.append(got)
            if got:
                batches.append(got)
        if self.cfg.confirm != "off" and any(c.learner is not None for c in self.captures):
            # a segment still learning the master's MAC: show it the packets that went
            # into the master where it is known, so it can spot their copies coming out
            self._learned()
            for c, got in zip(ready_read, batches_all, strict=True):
                if got and c.learner is None and self.master:
                    self._note_ingress(got)
            self._learned()
        if self.reordering:
            for c, got in zip(ready_read, batches_all, strict=True):
                if got:
                    self.reorder.setdefault(c, []).extend(got)
            self._release(time.time() - REORDER)
            return
        if not batches:
            return
        if len(batches) == 1:
            self._track(batches[0])
        else:  # several segments: keep the wire order
            self._track(list(heapq.merge(*batches, key=lambda p: p.ts)))

    def drain(self) -> None:
        """Read until every capture ring is empty (bounded: 2 s), then track all held."""
        deadline = time.monotonic() + 2.0
        while self.captures and time.monotonic() < deadline:
            before = self.packets + sum(len(h) for h in self.reorder.values())
            self.read_ready(self.captures)
            if self.packets + sum(len(h) for h in self.reorder.values()) == before:
                break
        self._release(float("inf"))

    # --- priming --------------------------------------------------------------------

    def start_prime(self, buffer: bool) -> bool:
        """Pull the master's table in a thread; with ``buffer`` hold sniffed packets until
        the snapshot is in (start-up, after a demotion), so they are applied after it."""
        if not self.cfg.prime_from or self.prime_thread is not None:
            return False  # one pull at a time, until finish_prime has taken its result
        from ..prime.client import fetch
        from ..prime.stage import PrimeStage

        source, key, timeout = self.cfg.prime_from, self.cfg.key_file, self.cfg.prime_timeout
        # a cold start (table empty, packets held) also encodes the kernel's messages while
        # the pull runs; a re-prime over a live table stages the entries only
        cold = buffer and len(self.table) == 0
        stage = PrimeStage(self.timeouts, self.cfg.max_flows, self.installer if cold else None)
        self.prime_stage = stage

        def pull() -> None:
            # the stage makes hundreds of thousands of long-lived acyclic objects: no
            # cyclic collections meanwhile (each would walk all made so far); they are
            # frozen with the rest once taken over (see GC_FREEZE_EVERY)
            gc_was_on = gc.isenabled()
            gc.disable()
            try:
                self.prime_result = fetch(source, key, timeout=timeout, sink=stage)
            except Exception as exc:  # reported by the main loop, one line
                self.prime_result = exc
            finally:
                if gc_was_on:
                    gc.enable()

        if buffer:
            self.prime_buffer = []
        self.prime_result = None
        self.prime_thread = threading.Thread(target=pull, name="prime", daemon=True)
        self.prime_thread.start()
        log.info("priming from %s", source)
        return True

    def finish_prime(self) -> None:
        """The pull ended: seed the tracker (all or nothing), then apply held packets."""
        thread = self.prime_thread
        if thread is None or thread.is_alive():
            return
        self.prime_thread = None
        result, self.prime_result = self.prime_result, None
        held, self.prime_buffer = self.prime_buffer, None
        if isinstance(result, Exception) or result is None:
            why = str(result).splitlines()[0] if result is not None else "no result"
            self.counters["prime-failed"] += 1
            self.prime_info = {"ok": False, "error": why}
            self.prime_next = time.monotonic() + PRIME_RETRY
            self.ratelog(
                "prime",
                logging.ERROR,
                "prime from %s failed: %s (retrying every %d s)",
                self.cfg.prime_from,
                why,
                PRIME_RETRY,
            )
            if self.cfg.prime_required and self.primed is False and self.packets_primed == 0:
                self.fatal = f"prime from {self.cfg.prime_from} failed: {why}"
        else:
            now = time.time()
            stage, self.prime_stage = self.prime_stage, None
            assert stage is not None
            inst = self.installer
            if self.table.absorb(stage.table):  # cold start: the staged table, whole
                adopted = len(self.table)
                if inst is not None and not self.active and stage.batches:
                    try:
                        # a second socket: the kernel's inserts run on two cores
                        big = len(stage.batches) >= 16 and isinstance(inst.sock, CtnlSocket)
                        helper = CtnlSocket() if big else None
                        gc.disable()  # Installed records by the hundred thousand
                        try:
                            inst.commit(stage.batches, now, helper)
                        finally:
                            gc.enable()
                            if helper is not None:
                                helper.close()
                    except OSError as exc:
                        self.ratelog("netlink", logging.ERROR, "ctnetlink write failed: %s", exc)
                        for conn in self.table.conns():  # the next flush tries again
                            inst.on_event("new", conn)
                elif inst is not None:
                    for conn in self.table.conns():
                        inst.on_event("new", conn)
            else:  # sniffed entries exist: what the tracker holds wins (adopt)
                adopted = 0
                gc.disable()
                try:
                    for conn in stage.table.conns():
                        if conn.expires > now and self.table.adopt(conn):
                            adopted += 1
                finally:
                    gc.enable()
            stage = None  # its prepared messages can go now
            # the new entries are long-lived and acyclic: frozen, not walked (the install
            # and the adoption above ran with the collector off)
            settle_gc(collect=False)
            expects = self._prime_expectations(result.expectations, result.taken_at, now)
            self.primed = True
            self.packets_primed += 1
            self.prime_next = None
            self.prime_info = {
                "ok": True,
                "source": result.source,
                "entries": result.count,
                "adopted": adopted,
                "expectations": len(result.expectations),
                "expectations_queued": expects,
                "bytes": result.bytes,
                "seconds": round(result.seconds, 3),
                "at": result.taken_at,
            }
            log.warning(
                "primed from %s: %d entries in %.2f s (%d adopted, %d already known or expired)",
                result.source,
                result.count,
                result.seconds,
                adopted,
                result.count - adopted,
            )
        if held:
            held.sort(key=lambda p: p.ts)
            n = self.packets
            self._track(held)
            self.packets = n
            log.info("applied %d packets captured during the pull", len(held))
        if self.installer is not None and not self.active:
            self._flush(self.installer)

    def _prime_expectations(self, exps: list[Any], taken_at: float, now: float) -> int:
        """The master's outstanding expectations from a prime: to the kernel (``expect``:
        sent once their master entry, created with its helper, is in) and to the helper
        follower, so a data connection sniffed later consumes them like sniffed ones.
        One per master (FTP and TFTP keep one); a sniffed one newer than the snapshot
        wins. Returns how many were queued."""
        if self.expect is None or self.ftp is None:
            return 0
        from ..conntrack.helpers.ftp import EXPECT_TIMEOUT, Expectation

        queued = 0
        for x in exps:
            found = self.table.get(x.master)
            if found is None:  # neither primed nor sniffed (expired, or not adopted)
                self.counters["prime-expect-no-master"] += 1
                continue
            master = found[0]  # the kernel finds a master by either of its tuples
            if (master.zone or self.cfg.zone) != self.cfg.zone:
                self.counters["prime-expect-other-zone"] += 1
                continue
            created = taken_at + x.timeout - EXPECT_TIMEOUT
            exp = Expectation(master.orig, x.tuple, x.mask, created, "prime")
            old = self.ftp.by_master.get(master.orig)
            if exp.expires <= now or (old is not None and old.created > taken_at):
                continue
            self.ftp.by_master[master.orig] = exp
            self.expect.add(exp)
            queued += 1
        return queued

    # --- takeover -------------------------------------------------------------------

    def promote(self) -> dict[str, Any]:
        start = time.monotonic()
        self.drain()
        now = time.time()
        sent = 0
        if self.installer is not None:
            sent = self.installer.install_all(self.table.entries(now), now)
            if self.expect is not None:
                sent += self.expect.flush(now)
        self.close_captures()
        self.active = True
        took = time.monotonic() - start
        installed = len(self.installer.shadow) if self.installer else 0
        log.warning(
            "promoted: committed %d messages in %.3f s; %d entries installed; "
            "standing down (the kernel tracks live traffic now)",
            sent,
            took,
            installed,
        )
        return {
            "ok": True,
            "state": "active",
            "committed": sent,
            "installed": installed,
            "seconds": round(took, 3),
        }

    def demote(self) -> dict[str, Any]:
        if not self.active:
            return {"ok": True, "state": "standby", "note": "already standby"}
        self.table = self._new_table()
        self.open_captures()
        self.active = False
        if self.cfg.prime_from:
            self.primed = False
            self.start_prime(buffer=True)
        log.warning("demoted: standby duty resumed with an empty table (mid-stream pickup)")
        return {"ok": True, "state": "standby"}

    # --- status ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = time.time()
        inst = self.installer
        capturing = bool(self.captures) and not self.lost and not self.active
        ready = (capturing or self.active) and self.primed is not False
        return {
            "ok": ready,
            "state": "active" if self.active else "standby",
            "capturing": capturing,
            "pid": os.getpid(),
            "uptime": round(now - self.started, 1),
            "interfaces": self.cfg.ifaces,
            "packets": self.packets,
            "last_packet_age": round(now - self.last_packet, 3) if self.last_packet else None,
            "flows": len(self.table),
            "installed": len(inst.shadow) if inst else 0,
            "pending": inst.pending if inst else 0,
            "primed": self.primed,
            "prime": self.prime_info,
            "capture": self.drops(),
            "install": dict(inst.counters) if inst else {},
            "tracker": dict(self.table.counters),
            "agent": dict(self.counters),
            "confirm": {
                "mode": "off"
                if self.confirmer is None
                else "both"
                if self.confirmer.two_segments
                else "mac",
                "master_macs": sorted(mac_text(m) for m in self.master),
                "learning": [c.iface for c in self.captures if c.learner is not None],
                **(dict(self.confirmer.counters) if self.confirmer else {}),
            },
            "ftp": {
                "outstanding": len(self.ftp.by_master) if self.ftp else 0,
                **(self.ftp.counters if self.ftp else {}),
                **(dict(self.expect.counters) if self.expect else {}),
            },
            "prefilter": (
                "off"
                if not self.cfg.prefilter
                else "warm-up"
                if self.prefilter_at is not None
                else "on"
            ),
            "lost_interfaces": sorted(self.lost),
            "skipped": dict(sum((c.decoder.skipped for c in self.captures), Counter())),
        }

    def handle_control(self) -> None:
        got = self.control.accept()
        if got is None:
            return
        conn, cmd = got
        if cmd == "promote":
            doc = self.promote() if not self.active else {"ok": True, "state": "active"}
        elif cmd == "demote":
            try:
                doc = self.demote()
            except CaptureError as exc:
                doc = {"ok": False, "error": str(exc)}
        elif cmd == "status":
            doc = self.status()
        elif cmd == "prime":
            if not self.cfg.prime_from:
                doc = {"ok": False, "error": "no --prime-from configured"}
            elif self.active:
                doc = {"ok": False, "error": "active (promoted): nothing to prime"}
            else:
                started = self.start_prime(buffer=False)
                if self.prime_thread is not None:
                    self.prime_thread.join(self.cfg.prime_timeout * 4 + 5)
                self.finish_prime()
                doc = {"ok": bool(self.prime_info.get("ok")), "started": started, **self.prime_info}
        elif cmd == "table":
            from ..conntrack.listing import format_table

            now = time.time()
            doc = {"ok": True, "table": format_table(self.table.entries(now), now)}
        else:
            doc = {"ok": False, "error": f"unknown command {cmd!r}"}
        self.control.answer(conn, doc)

    # --- main loop ------------------------------------------------------------------

    def _signals(self) -> None:
        def stop(_sig: int, _frame: object) -> None:
            self.stop = True

        def promote(_sig: int, _frame: object) -> None:
            self.want_promote = True

        def demote(_sig: int, _frame: object) -> None:
            self.want_demote = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR1, promote)
        signal.signal(signal.SIGUSR2, demote)

    def run(self) -> int:
        self._signals()
        self.open_captures()  # before the pull: nothing sniffed meanwhile is lost
        if self.cfg.drop_privileges and os.geteuid() == 0:
            from .privs import drop_privileges

            # before any thread starts: capabilities are per thread
            done = drop_privileges(user=self.cfg.user)
            log.info("privileges dropped: %s", "; ".join(done))
        if self.cfg.metrics_listen:
            from .metrics import Metrics

            try:
                self.metrics = Metrics(self.cfg.metrics_listen)
            except (OSError, ValueError) as exc:
                from ..errors import CliError

                raise CliError(f"metrics: {exc}") from None
        if self.cfg.prime_from:
            self.start_prime(buffer=True)
        log.info(
            "standby agent up (pid %d): installing into %s, control %s",
            os.getpid(),
            "this namespace's conntrack table" if self.sock else "nowhere (--no-install)",
            self.cfg.control or "@sniffover",
        )
        flush_every = self.cfg.flush_interval
        next_flush = time.monotonic() + flush_every
        next_tick = time.monotonic() + 1.0
        gc.collect()  # start-up garbage, then everything alive so far is permanent
        gc.freeze()
        next_freeze = time.monotonic() + GC_FREEZE_EVERY
        next_stats = time.monotonic() + self.cfg.stats_interval
        try:
            while not self.stop:
                fds: list[Any] = [self.control, *self.captures]
                wait = TICK
                if self.installer is not None and self.installer.pending:
                    wait = max(0.0, min(TICK, next_flush - time.monotonic()))
                if self.reordering and any(self.reorder.values()):
                    self._release(time.time() - REORDER)
                    wait = min(wait, REORDER / 2)
                try:
                    ready, _, _ = select.select(fds, [], [], wait)
                except InterruptedError:
                    ready = []
                caps = [r for r in ready if isinstance(r, LiveCapture)]
                if caps:
                    self.read_ready(caps)
                if self.control in ready:
                    self.handle_control()
                if self.prime_thread is not None and not self.prime_thread.is_alive():
                    self.finish_prime()
                    if self.fatal:
                        from ..prime.client import PrimeError

                        raise PrimeError(self.fatal + " (--prime-required)")
                if self.want_promote:
                    self.want_promote = False
                    if not self.active:
                        self.promote()
                if self.want_demote:
                    self.want_demote = False
                    self.demote()
                mono = time.monotonic()
                inst = self.installer
                if inst is not None and not self.active and mono >= next_flush:
                    next_flush = mono + flush_every
                    if inst.pending:
                        self._flush(inst)
                if mono >= next_tick:
                    next_tick = mono + 1.0
                    self._tick()
                if mono >= next_freeze:
                    next_freeze = mono + GC_FREEZE_EVERY
                    settle_gc()
                if mono >= next_stats:
                    next_stats = mono + self.cfg.stats_interval
                    self._log_stats()
        finally:
            self.close_captures()
            self.control.close()
            if self.sock is not None:
                self.sock.close()
        log.info("stopped after %d packets, %d flows tracked", self.packets, len(self.table))
        return 0

    def _flush(self, inst: Installer) -> None:
        try:
            now = time.time()
            inst.flush(now)
            if self.expect is not None:
                self.expect.flush(now)
        except OSError as exc:
            self.ratelog("netlink", logging.ERROR, "ctnetlink write failed: %s", exc)

    def _tick(self) -> None:
        now = time.time()
        if self.active:
            return
        if self.lost:
            self._reopen_lost()
        if self.confirmer is not None:
            self._learned()
            self.confirmer.expire(now)
            later, self.confirm_later = self.confirm_later, []
            for t in later:
                self.confirmer.confirm(t)
            waiting = [c.iface for c in self.captures if c.learner is not None and c.frames]
            if waiting and now - self.started > 10:
                self.ratelog(
                    "learning",
                    logging.WARNING,
                    "master firewall's MAC not known yet on %s: flows there are tracked but "
                    "not installed (forwarding confirmation); give --master-mac, or --confirm "
                    "off to trust the segment",
                    ", ".join(waiting),
                )
        mono = time.monotonic()
        if self.prime_next is not None and mono >= self.prime_next and not self.active:
            self.prime_next = None
            self.start_prime(buffer=False)
        drops = self.drops()
        if self.cfg.prime_from and self.cfg.reprime_after_drops:
            dropped = sum(d["dropped"] + d["ifdropped"] for d in drops.values())
            if dropped > self.drops_seen:
                self.drops_seen = dropped
                if mono - self.last_drop_prime >= PRIME_AFTER_DROPS and self.start_prime(
                    buffer=False
                ):
                    self.last_drop_prime = mono
                    log.warning("capture lost packets: re-priming from the master")
        if self.prefilter_at is not None and mono >= self.prefilter_at:
            self.prefilter_at = None
            self.bpf = self.bpf_pre
            for c in self.captures:
                c.set_filter(self.bpf)
            log.info(
                "warm-up over: prefilter on (control segments + 1/%d sample)",
                self.cfg.pickup_sample,
            )
        self.table.expire(now)
        if self.ftp is not None:
            self.ftp.expire(now)
        if self.installer is not None:
            try:
                self.installer.refresh(now, self.table.conn)
            except OSError as exc:
                self.ratelog("netlink", logging.ERROR, "ctnetlink refresh failed: %s", exc)
        for iface, d in drops.items():
            if d["dropped"] or d["ifdropped"]:
                self.ratelog(
                    f"drops-{iface}",
                    logging.WARNING,
                    "%s: capture drops: %d by the ring, %d by the interface (of %d received)",
                    iface,
                    d["dropped"],
                    d["ifdropped"],
                    d["received"],
                )
        if self.metrics is not None:
            self.metrics.update(self)

    def _log_stats(self) -> None:
        s = self.status()
        log.info(
            "%d packets, %d flows tracked, %d installed, %d pending, install %s",
            s["packets"],
            s["flows"],
            s["installed"],
            s["pending"],
            s["install"],
        )
