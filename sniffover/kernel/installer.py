"""Installer: keep the standby kernel's conntrack table in step with the tracker (ctnetlink).

The tracker's events mark entries dirty; ``flush()`` turns each dirty entry into
at most one netlink message, decided by ``conntrack.sync.desired`` and a shadow
of what the kernel already holds, so an entry is only sent when its state,
status or flags change (or its kernel timer needs re-arming, ``refresh()``).
Messages are hand-packed and sent 64 per ``sendmsg`` with one ack each.

Kernel answers and what is done about them:

* create (``NLM_F_EXCL``) -> ``EEXIST``: the kernel already has the entry (an
  earlier run of the agent, or a priming): retried as an update and adopted.
* update -> ``ENOENT``: the kernel entry is gone (expired, deleted): recreated.
* update -> ``EBUSY``: the kernel entry has status bits we would clear: retried
  with SEEN_REPLY|ASSURED kept.
* ``ENOMEM``: the table is full (``nf_conntrack_max``): counted, dropped.
* ``ENOBUFS`` on the socket: the batch is requeued and counted.
* anything else: counted by errno name, the entry is left out.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Collection
from typing import Final, Protocol

from ..conntrack.entry import IPS_ASSURED, IPS_SEEN_REPLY, Conn
from ..conntrack.helpers import select
from ..conntrack.install_policy import Desired, desired, remaining_timeout
from ..conntrack.listing import format_entry
from ..conntrack.tuple import Tuple, invert
from ..conntrack.zones import orig_key
from .ctnetlink import (
    TcpInfo,
    encode_ct_delete,
    encode_ct_new,
    encode_ct_new_fast,
)

log = logging.getLogger("sniffover.install")

WANTS_MAX: Final = 4096  # distinct Desired values shared (see _plan)
BATCH = 64  # messages per sendmsg (one datagram; only the last asks for an ack)
REFRESH_FRACTION = 0.3  # re-arm a kernel timer when less than this share of it is left
REFRESH_MIN = 5.0  # ... or less than this many seconds


class BatchSender(Protocol):
    """What the installer needs of a ctnetlink socket (``ctnetlink.CtnlSocket``; tests pass
    their own). A protocol, not the class: compiled, a class annotation is checked."""

    def next_seq(self) -> int: ...

    def send_batch(self, messages: list[bytes]) -> dict[int, int]: ...


class ClosableSender(BatchSender, Protocol):
    """A second ctnetlink socket for ``commit_prepared``, closed when the commit is done."""

    def close(self) -> None: ...


# Plain classes, not dataclasses: compiled, a dataclass is built through the Python
# __init__ the dataclass decorator generates (about 1 us); these are made per entry.
class Installed:
    """Our record of one entry in the kernel."""

    __slots__ = ("want", "expires", "timeout", "reply")

    def __init__(self, want: Desired, expires: float, timeout: int, reply: Tuple) -> None:
        self.want = want
        self.expires = expires  # when the kernel's timer runs out, as last set
        self.timeout = timeout  # the timeout last sent
        self.reply = reply


class _Op:
    """One message to send: create, update or delete the entry of ``orig``."""

    __slots__ = ("orig", "conn", "want", "mode", "timeout", "status_extra", "plain")

    def __init__(
        self,
        orig: Tuple,
        conn: Conn | None,  # None: delete
        want: Desired | None,
        mode: str,  # "create" | "update" | "delete"
        timeout: int = 0,
        status_extra: int = 0,
        plain: bool = False,  # no helper even where one is wanted (the kernel has none)
    ) -> None:
        self.orig = orig
        self.conn = conn
        self.want = want
        self.mode = mode
        self.timeout = timeout
        self.status_extra = status_extra
        self.plain = plain


def _transmit(sock: BatchSender, batches: list[Batch]) -> list[dict[int, int] | OSError]:
    """Send each batch; its answers ({seq: errno}) or the error that stopped it. After
    an error other than ENOBUFS the rest is not sent (the socket is not usable)."""
    out: list[dict[int, int] | OSError] = []
    for msgs, _ops in batches:
        try:
            out.append(sock.send_batch(msgs))
        except OSError as exc:
            out.append(exc)
            if exc.errno != errno.ENOBUFS:
                break
    return out


# One sendmsg: the messages, and the operation behind each sequence number.
Batch = tuple[list[bytes], dict[int, _Op]]


def nat_bindings(o: Tuple, r: Tuple) -> tuple[tuple[bytes, int] | None, tuple[bytes, int] | None]:
    """(CTA_NAT_SRC, CTA_NAT_DST) bindings, each (address, "port"), that make the kernel
    derive reply ``r`` from original ``o``; None where that stage is a null binding.

    The "port" is the range nf_nat_l4proto_unique_tuple() picks from: the reply's
    destination port for SNAT, its source port for DNAT. ICMP has one key for both
    directions, the echo id (``src.u.icmp.id``, kept by the reply, ``r[3]``): either
    stage must name it, or the kernel picks id 0 from the range 0-0. Its "dport" is the
    type and code, which NAT never changes."""
    if o[0] in (1, 58):
        snat = r[2] != o[1]
        dnat = r[1] != o[2]
        if r[3] != o[3] and not dnat:
            snat = True  # an id rewrite alone: the SNAT stage carries it (masquerade does)
        return (r[2], r[3]) if snat else None, (r[1], r[3]) if dnat else None
    src = (r[2], r[4]) if r[2] != o[1] or r[4] != o[3] else None  # the reply goes elsewhere
    dst = (r[1], r[3]) if r[1] != o[2] or r[3] != o[4] else None  # it comes from elsewhere
    return src, dst


class Installer:
    """Shadow + dirty set + batched ctnetlink writer."""

    def __init__(
        self,
        sock: BatchSender,
        *,
        zone: int = 0,
        mark: int | None = None,
        batch: int = BATCH,
        assume_handshake: bool = False,
        require_forwarded: bool = False,
        helpers: Collection[str] = (),
    ) -> None:
        self.sock = sock
        # Masters of the ``helpers`` (registry names) are created with CTA_HELP: the kernel
        # then follows e.g. an FTP session after a takeover and accepts its expectations
        # (kernel/expect.py). Helpers with install_unreplied (TFTP) go in unreplied.
        chosen = select(helpers)
        self.helper_names: dict[tuple[int, int], str] = {h.key: h.name for h in chosen}
        self.unreplied: frozenset[tuple[int, int]] = frozenset(
            h.key for h in chosen if h.install_unreplied
        )
        self.zone = zone
        self.mark = mark
        self.batch = batch
        self.shadow: dict[Tuple, Installed] = {}
        self.dirty: dict[Tuple, Conn] = {}
        self.doomed: dict[Tuple, Conn] = {}  # installed, then rebound (NAT): delete the old
        self.counters: Counter[str] = Counter()
        self.enabled = True
        self.assume_handshake = assume_handshake
        self._tcp_info: dict[Desired, TcpInfo] = {}
        self._wants: dict[Desired, Desired] = {}
        self.require_forwarded = require_forwarded

    # --- tracker listener -----------------------------------------------------------

    def on_event(self, kind: str, conn: Conn) -> None:
        if kind == "destroy":
            # The tracker let it go (timed out, dropped for room, reopened): the kernel's
            # copy ages out on its own timer. Never deleted from here: after a takeover
            # without `ctl promote` the agent no longer sees the traffic that keeps the
            # kernel's copy alive, and deleting it would cut a live connection.
            key = orig_key(conn)
            self.dirty.pop(key, None)
            self.shadow.pop(key, None)
            return
        key = orig_key(conn)
        if kind == "replace":  # same flow, new tuples (NAT): the old kernel copy goes
            self.dirty.pop(key, None)
            if key in self.shadow:
                self.doomed[key] = conn
            return
        self.doomed.pop(key, None)
        self.dirty[key] = conn

    @property
    def pending(self) -> int:
        return len(self.dirty) + len(self.doomed)

    # --- writing --------------------------------------------------------------------

    def flush(self, now: float) -> int:
        """Send what changed since the last flush; returns the number of messages sent."""
        if not self.enabled:
            return 0
        ops: list[_Op] = []
        debug = log.isEnabledFor(logging.DEBUG)
        for orig in self.doomed:
            if orig in self.shadow and orig not in self.dirty:
                ops.append(_Op(orig, None, None, "delete"))
        self.doomed.clear()
        dirty, self.dirty = self.dirty, {}
        for orig, conn in dirty.items():
            planned = self._plan(orig, conn, now)
            if debug:
                line = format_entry(conn, conn.last_seen)
                log.debug("plan <Conn %s> -> %s", line, [(op.mode, op.want) for op in planned])
            ops += planned
        return self._run(ops, now)

    def refresh(
        self, now: float, lookup: Callable[[Tuple], Conn | None], exact: bool = False
    ) -> int:
        """Re-arm kernel timers that would run out well before the tracker's.

        A kernel timer is re-sent when it is about to expire while the tracker
        keeps the entry, or when the tracker's timer has moved far beyond it (an
        entry installed while data was unacknowledged got the 300 s timeout; the
        master has long since gone back to 5 days). Shorter tracker timers are
        not pushed down: state changes carry those. ``exact`` (at promotion)
        re-sends every timer the kernel would end earlier than the tracker.
        """
        ops: list[_Op] = []
        for orig, inst in self.shadow.items():
            conn = lookup(orig)
            if conn is None or orig_key(conn) != orig:
                continue
            ahead = conn.expires - inst.expires
            if ahead <= 1:
                continue
            if not exact:
                left = inst.expires - now
                closing = left <= max(REFRESH_MIN, inst.timeout * REFRESH_FRACTION)
                if not closing and ahead < max(60.0, 0.1 * (conn.expires - now)):
                    continue
            ops += self._plan(orig, conn, now, force=True)
        return self._run(ops, now)

    def _plan(self, orig: Tuple, conn: Conn, now: float, force: bool = False) -> list[_Op]:
        inst = self.shadow.get(orig)
        want = desired(
            conn,
            now,
            inst is not None,
            self.assume_handshake,
            self.require_forwarded,
            self.unreplied,
        )
        if want is None:
            return [_Op(orig, None, None, "delete")] if inst is not None else []
        # one object per distinct value: the shadow keeps one per installed entry for as
        # long as it lives (112 bytes each), and a table has few distinct values
        wants = self._wants
        shared = wants.get(want)
        if shared is None:
            if len(wants) >= WANTS_MAX:  # SCTP's vtags make values unique: stay bounded
                wants.clear()
            wants[want] = want
        else:
            want = shared
        timeout = remaining_timeout(conn, now)
        if inst is not None and inst.reply != conn.reply:
            # NAT seen after the entry went in: the kernel cannot add NAT to an entry
            return [
                _Op(orig, None, None, "delete"),
                _Op(orig, conn, want, "create", timeout),
            ]
        if inst is not None and inst.want == want and not force:
            return []
        return [_Op(orig, conn, want, "update" if inst is not None else "create", timeout)]

    def _encode(self, op: _Op, seq: int, ack: bool = True) -> bytes:
        """One message; only the last of a batch asks for an ack (failures always answer)."""
        if op.mode == "delete":
            # keyed by the original tuple and the zone it is hashed in (conntrack.zones):
            # that zone as CTA_ZONE finds the entry whatever its zone's direction
            o, zid = (op.orig[:5], op.orig[5]) if len(op.orig) == 6 else (op.orig, self.zone)
            return encode_ct_delete(o, zone=zid, seq=seq, ack=ack)
        conn, want = op.conn, op.want
        assert conn is not None and want is not None
        tcp = None
        if want.state >= 0:
            tcp = self._tcp_info.get(want)
            if tcp is None:  # a handful of distinct values: cache them
                tcp = self._tcp_info[want] = TcpInfo(
                    want.state,
                    want.wscale_orig,
                    want.wscale_reply,
                    want.flags_orig,
                    want.flags_reply,
                    0x0F,
                    0x0F,
                )
        helper = self._helper(op, conn)
        o, r = conn.orig, conn.reply
        create = op.mode == "create"
        plain = r
        nat_src = nat_dst = None
        if r[1] != o[2] or r[2] != o[1] or r[3] != o[4] or r[4] != o[3] or o[0] in (1, 58):
            inverse = invert(o)  # translated (or ICMP, whose inverse swaps types)
            if inverse is not None and inverse != r:
                # NAT: the plain reply plus the binding; the kernel derives the translated
                # reply from them (conntrack-semantics §4.3). Only a create may carry it.
                plain = inverse
                if create:
                    nat_src, nat_dst = nat_bindings(o, r)
        sctp = None
        if want.sctp_state >= 0 and plain is r:  # SCTP: state and vtags (not with NAT)
            sctp = (want.sctp_state, want.vtag_orig, want.vtag_reply)
        zone, zone_dir = (conn.zone, conn.zone_dir) if conn.zone else (self.zone, 3)
        if (
            zone_dir == 3
            and plain is r
            and sctp is None
            and helper is None
            and want.seqadj is None
            and not conn.labels
            and o[0]
            not in (
                1,
                58,
            )
        ):
            return encode_ct_new_fast(  # the common case: one struct.pack
                o,
                r,
                want.status | op.status_extra,
                op.timeout,
                tcp,
                conn.mark or self.mark,
                zone,
                seq,
                create,
                create,
                ack,
            )
        return encode_ct_new(
            o,
            plain,
            status=want.status | op.status_extra,
            timeout=op.timeout,
            tcp=tcp,
            mark=conn.mark or self.mark,
            zone=zone,
            zone_dir=zone_dir,
            seq=seq,
            create=create,
            exclusive=create,
            ack=ack,
            nat_src=nat_src,
            nat_dst=nat_dst,
            labels=conn.labels,
            helper=helper,
            sctp=sctp,
            seqadj=want.seqadj,
        )

    def _helper(self, op: _Op, conn: Conn) -> str | None:
        """The kernel helper to attach: only on create (it cannot be added later)."""
        if op.mode == "create" and not op.plain:
            names = self.helper_names
            if names:
                o = conn.orig
                return names.get((o[0], o[4]))
        return None

    def _run(self, ops: list[_Op], now: float) -> int:
        sent = 0
        for _attempt in range(3):
            if not ops:
                break
            n, ops = self._send(self._encode_batches(ops), now)
            sent += n
        self.counters["gave-up"] += len(ops)
        return sent

    # A prime is planned and encoded while the pull still runs (``prepare``, in the prime
    # thread) and sent once it is complete and authentic (``commit``): only the kernel's
    # part is left for after the last byte.

    def prepare(self, conns: list[Conn], now: float) -> list[Batch]:
        """The messages that would install ``conns`` (none is sent, nothing recorded)."""
        ops: list[_Op] = []
        for conn in conns:
            ops += self._plan(orig_key(conn), conn, now)
        return self._encode_batches(ops)

    def commit(self, batches: list[Batch], now: float, helper: BatchSender | None = None) -> int:
        """Send what ``prepare`` made (failures are retried as ``flush`` does). With
        ``helper`` (a second ctnetlink socket) every other batch goes through it from a
        thread: the kernel inserts in the sending thread's system call, with the GIL
        released, so two senders keep two cores busy."""
        if helper is None or len(batches) < 16:
            sent, retry = self._send(batches, now)
            return sent + self._run(retry, now)
        theirs = batches[1::2]
        mine = batches[0::2]
        box: list[list[dict[int, int] | OSError]] = []
        thread = threading.Thread(target=lambda: box.append(_transmit(helper, theirs)))
        thread.start()
        try:
            got = _transmit(self.sock, mine)
        finally:
            thread.join()
        sent, retry = self._account(mine, got, now)
        sent2, retry2 = self._account(theirs, box[0] if box else [], now)
        return sent + sent2 + self._run(retry + retry2, now)

    def commit_prepared(
        self,
        batches: list[Batch],
        now: float,
        open_second: Callable[[], ClosableSender] | None = None,
    ) -> int:
        """Commit a cold start's prepared batches (a prime into an empty table) with the
        cyclic collector off: the Installed records come by the hundred thousand. A big
        commit (16 batches or more) also goes through a second socket from
        ``open_second``, so the kernel's inserts run on two cores (see ``commit``)."""
        helper = open_second() if open_second is not None and len(batches) >= 16 else None
        gc.disable()
        try:
            return self.commit(batches, now, helper)
        finally:
            gc.enable()
            if helper is not None:
                helper.close()

    def _encode_batches(self, ops: list[_Op]) -> list[Batch]:
        out: list[Batch] = []
        next_seq = self.sock.next_seq
        encode = self._encode
        for i in range(0, len(ops), self.batch):
            chunk = ops[i : i + self.batch]
            bysq: dict[int, _Op] = {}
            msgs = []
            last = chunk[-1]
            for op in chunk:
                seq = next_seq()
                bysq[seq] = op
                msgs.append(encode(op, seq, op is last))
            out.append((msgs, bysq))
        return out

    def _send(self, batches: list[Batch], now: float) -> tuple[int, list[_Op]]:
        """(messages sent, operations to try again)."""
        return self._account(batches, _transmit(self.sock, batches), now)

    def _account(
        self, batches: list[Batch], results: list[dict[int, int] | OSError], now: float
    ) -> tuple[int, list[_Op]]:
        """Record what the kernel answered to each batch: (messages sent, operations to
        try again). A batch without an answer (its sender failed) is requeued."""
        sent = 0
        retry: list[_Op] = []
        shadow = self.shadow
        c = self.counters
        for i, (msgs, bysq) in enumerate(batches):
            answer = results[i] if i < len(results) else OSError(errno.ENOBUFS, "not sent")
            if isinstance(answer, OSError):
                if answer.errno != errno.ENOBUFS:
                    raise answer
                c["enobufs"] += 1
                for op in bysq.values():  # requeue: the next flush tries again
                    if op.conn is not None:
                        self.dirty[op.orig] = op.conn
                continue
            sent += len(msgs)
            created = updated = 0
            for seq, op in bysq.items():
                err = answer.get(seq, 0)
                if not err and op.conn is not None and op.want is not None:
                    # the common case inline: the kernel took it
                    if op.mode == "create":
                        created += 1
                    else:
                        updated += 1
                    shadow[op.orig] = Installed(
                        op.want, now + op.timeout, op.timeout, op.conn.reply
                    )
                    continue
                again = self._result(op, err, now)
                if again is not None:
                    retry.append(again)
            if created:
                c["created"] += created
            if updated:
                c["updated"] += updated
        return sent, retry

    def _result(self, op: _Op, err: int, now: float) -> _Op | None:
        c = self.counters
        if op.mode == "delete":
            self.shadow.pop(op.orig, None)
            c[
                "deleted" if not err else "delete-gone" if err == errno.ENOENT else "delete-error"
            ] += 1
            return None
        if not err:
            assert op.conn is not None and op.want is not None
            c["created" if op.mode == "create" else "updated"] += 1
            self.shadow[op.orig] = Installed(op.want, now + op.timeout, op.timeout, op.conn.reply)
            return None
        if err == errno.EEXIST and op.mode == "create":
            c["exists-adopted"] += 1
            return _Op(op.orig, op.conn, op.want, "update", op.timeout, op.status_extra)
        if err == errno.ENOENT and op.mode == "update":
            c["vanished-recreated"] += 1
            self.shadow.pop(op.orig, None)
            return _Op(op.orig, op.conn, op.want, "create", op.timeout)
        if err == errno.EOPNOTSUPP and op.conn is not None and self._helper(op, op.conn):
            c["helper-unavailable"] += 1  # no such helper in this kernel: go without
            return _Op(op.orig, op.conn, op.want, op.mode, op.timeout, op.status_extra, True)
        if err == errno.EBUSY and not op.status_extra:
            c["status-kept"] += 1
            return _Op(op.orig, op.conn, op.want, op.mode, op.timeout, IPS_SEEN_REPLY | IPS_ASSURED)
        if err == errno.ENOMEM:
            c["table-full"] += 1
        else:
            name = errno.errorcode.get(err, str(err))
            if not c[f"error-{name}"]:
                log.warning("kernel refused an entry: %s (%s)", name, os.strerror(err))
            c[f"error-{name}"] += 1
        return None

    # --- takeover -------------------------------------------------------------------

    def install_all(self, conns: list[Conn], now: float) -> int:
        """Mark every tracked entry dirty, flush, and bring every kernel timer up to the
        tracker's: used at promotion time."""
        conns_by_orig = {orig_key(c): c for c in conns}
        for key, conn in conns_by_orig.items():
            self.dirty.setdefault(key, conn)
        return self.flush(now) + self.refresh(now, conns_by_orig.get, exact=True)
