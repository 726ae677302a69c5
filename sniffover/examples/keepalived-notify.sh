#!/bin/sh
# keepalived notify script for a sniffover standby (install as /etc/keepalived/sniffover-notify.sh).
#
# keepalived calls it as: sniffover-notify.sh GROUP|INSTANCE NAME STATE PRIORITY
# MASTER : commit every pending change to this kernel's conntrack table, then stand down
#          (the kernel tracks live traffic itself from now on). sniffover installs continuously
#          (every 20 ms), so this only flushes the last few milliseconds of changes.
# BACKUP : resume standby duty (sniff, track, install).
# FAULT  : same as BACKUP: keep tracking, so a later takeover still has the state.
set -u
STATE=${3:-}
CTL="/usr/local/sbin/sniffover ctl"
log() { logger -t sniffover-notify "$*"; }
case "$STATE" in
    MASTER)
        if out=$($CTL promote --timeout 10 2>&1); then log "promote: $out"
        else log "promote FAILED: $out"; fi ;;
    BACKUP|FAULT)
        if out=$($CTL demote --timeout 10 2>&1); then log "demote: $out"
        else log "demote FAILED: $out"; fi ;;
    *) log "ignoring state '$STATE'" ;;
esac
exit 0
