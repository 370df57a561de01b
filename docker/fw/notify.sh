#!/bin/sh
# keepalived notify hook of a compose-lab firewall: record the transition, show it in the container log,
# and hand it to ctsync when the daemon runs here (CTSYNC_DAEMON=1).
# Arguments (keepalived's generic notify): TYPE NAME STATE [PRIORITY]
mkdir -p /run/ctsd
printf '%s %s\n' "$(date +%s.%N)" "$*" >>/run/ctsd/vrrp.log
printf '%s\n' "$3" >/run/ctsd/vrrp-state
printf '[notify] %s\n' "$*" >/proc/1/fd/1 2>/dev/null || true
# `ctsync notify` arrives with the failover work (issue 4); until then the daemon only syncs.
if [ "${CTSYNC_DAEMON:-0}" = 1 ] && ctsync --help 2>/dev/null | grep -q "ctsync notify"; then
  exec ctsync notify "$@"
fi
