#!/usr/bin/env bash
# A private Docker engine for the compose lab: own netns, own paths, no host networking side effects.
#
#   docker/engine.sh start   install docker.io + docker-compose if missing, start dockerd, print DOCKER_HOST
#   docker/engine.sh stop    stop the dockerd we started (by PID), its shims, the netns and the exec root
#   docker/engine.sh env     print `export DOCKER_HOST=...` for the running engine (eval "$(... env)")
#   docker/engine.sh status  exit 0 when the engine answers
#
# Why a network namespace: dockerd runs inside `ctsd-docker`, a netns with only a loopback device. Every
# bridge Docker creates (one per compose network), its gateway address, and anything a container with
# NET_ADMIN might add as a route live in that namespace, which has no uplink. The host's routes, its
# ip_forward setting, its nftables/iptables rules and its interfaces are never touched, so nothing the lab
# does can reach an address outside the lab. On top of that dockerd runs with --iptables=false,
# --ip6tables=false, --ip-masq=false, --ip-forward=false and --bridge=none (no default bridge network), and
# compose networks are `internal: true`.
#
# `ip netns exec` also gives dockerd a private mount namespace (with /sys for its netns): the overlay
# mounts of containers never show on the host and disappear with the engine.
#
# Environment:
#   CTSD_DOCKER_DIR      state directory (default /tmp/ctsd-docker): data/ (images, kept as a cache),
#                        exec/, docker.sock, dockerd.pid, dockerd.log
#   CTSD_DOCKER_STORAGE  storage driver (default: overlay2 if it works here, else vfs)
#   CTSD_DOCKER_NETNS    netns name (default ctsd-docker)
set -euo pipefail

DIR="${CTSD_DOCKER_DIR:-/tmp/ctsd-docker}"
NETNS="${CTSD_DOCKER_NETNS:-ctsd-docker}"
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/dockerd.pid"
LOG="$DIR/dockerd.log"
DOCKER_HOST_VALUE="unix://$SOCK"
# The Debian package's client matches the daemon's API; /usr/local/bin/docker on some machines is newer.
DOCKER_BIN="${DOCKER_BIN:-/usr/bin/docker}"

log() { printf '[engine] %s\n' "$*" >&2; }
die() { printf '[engine] error: %s\n' "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (dockerd, network namespaces)"; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  [ -x /usr/bin/docker ] || missing+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  # The package's maintainer scripts must not start a system dockerd with default flags (iptables on,
  # /var/run/docker.sock). Where no policy-rc.d forbids it, add a temporary one for the install.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; added_policy=1
  fi
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
    || { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
  [ "$added_policy" = 1 ] && rm -f "$policy"
  return 0
}

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against PID reuse: it must be a dockerd using our socket.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$SOCK" || return 1
  echo "$pid"
}

answers() { DOCKER_HOST="$DOCKER_HOST_VALUE" "$DOCKER_BIN" version >/dev/null 2>&1; }

pick_storage() {
  if [ -n "${CTSD_DOCKER_STORAGE:-}" ]; then echo "$CTSD_DOCKER_STORAGE"; return; fi
  # overlay2 needs overlayfs on top of the filesystem that holds the data root.
  local probe="$DIR/overlay-probe"
  rm -rf "$probe"; mkdir -p "$probe"/{l,u,w,m}
  if mount -t overlay overlay -o "lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w" "$probe/m" 2>/dev/null; then
    umount "$probe/m"; rm -rf "$probe"; echo overlay2
  else
    rm -rf "$probe"; echo vfs
  fi
}

start() {
  need_root
  install_packages
  if pid="$(running_pid)" && answers; then
    log "already running (pid $pid)"
    echo "export DOCKER_HOST=$DOCKER_HOST_VALUE"
    return 0
  fi
  mkdir -p "$DIR/data" "$DIR/exec"
  rm -f "$SOCK" "$PIDFILE"

  if ! ip netns list | grep -qw "^$NETNS"; then
    ip netns add "$NETNS"
  fi
  ip -n "$NETNS" link set lo up

  local storage; storage="$(pick_storage)"
  local t0; t0=$(date +%s.%N)
  # setsid: the engine outlives this shell and is not hit by a ^C meant for a test script.
  setsid ip netns exec "$NETNS" "$0" _exec-dockerd "$(cgroup_mounts)" \
    --data-root "$DIR/data" \
    --exec-root "$DIR/exec" \
    --pidfile "$PIDFILE" \
    --host "$DOCKER_HOST_VALUE" \
    --group root \
    --storage-driver "$storage" \
    --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
    --bridge=none --userland-proxy=false \
    --log-level warn \
    </dev/null >"$LOG" 2>&1 &
  local launcher=$!

  local i
  for i in $(seq 1 300); do
    if answers; then break; fi
    if ! kill -0 "$launcher" 2>/dev/null; then
      tail -n 30 "$LOG" >&2
      die "dockerd exited during start (log: $LOG)"
    fi
    sleep 0.1
  done
  answers || { tail -n 30 "$LOG" >&2; die "dockerd did not answer within 30 s (log: $LOG)"; }
  local t1; t1=$(date +%s.%N)
  log "dockerd pid $(cat "$PIDFILE"), storage $storage, netns $NETNS, ready in $(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s"
  echo "export DOCKER_HOST=$DOCKER_HOST_VALUE"
}

# The host's cgroup mounts as "fstype|options|target" lines. `ip netns exec` mounts a fresh /sys for the
# netns, which hides /sys/fs/cgroup/*; dockerd needs them back (it refuses to start without the devices
# controller).
cgroup_mounts() {
  awk '$3 == "cgroup" || $3 == "cgroup2" { print $3 "|" $4 "|" $2 }' /proc/self/mounts
}

# Runs inside `ip netns exec` (private mount namespace): restore the cgroup hierarchies, then exec dockerd.
exec_dockerd() {
  local spec="$1"; shift
  if ! mountpoint -q /sys/fs/cgroup; then
    if printf '%s\n' "$spec" | grep -q '|/sys/fs/cgroup$'; then :; else
      mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup_root /sys/fs/cgroup
    fi
  fi
  local line fstype opts target
  while IFS='|' read -r fstype opts target; do
    [ -n "$target" ] || continue
    mkdir -p "$target"
    mountpoint -q "$target" || mount -t "$fstype" -o "$opts" "$fstype" "$target"
  done <<<"$spec"
  exec dockerd "$@"
}

# Processes our engine started that can outlive dockerd: containerd and its shims (they name our exec root).
our_leftovers() {
  local p
  for p in /proc/[0-9]*; do
    [ -r "$p/cmdline" ] || continue
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "$DIR/exec"; then echo "${p#/proc/}"; fi
  done
}

stop() {
  need_root
  local pid
  if pid="$(running_pid)"; then
    log "stopping dockerd pid $pid"
    kill -TERM "$pid"
    local i
    for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "dockerd did not exit in 15 s, SIGKILL"; kill -KILL "$pid"; fi
  else
    log "no dockerd of ours is running"
  fi
  local left; left="$(our_leftovers | tr '\n' ' ')"
  if [ -n "${left// }" ]; then
    log "killing leftover shims/containerd of our engine: $left"
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$PIDFILE" "$SOCK"
  # Mounts of the engine lived in its private mount namespace; unmount anything that leaked anyway.
  local m
  for m in $(awk -v d="$DIR" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$DIR/exec"
  if ip netns list | grep -qw "^$NETNS"; then ip netns del "$NETNS"; fi
  log "stopped (image cache kept in $DIR/data; remove it with: rm -rf $DIR)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) running_pid >/dev/null && answers || die "engine not running (docker/engine.sh start)"
       echo "export DOCKER_HOST=$DOCKER_HOST_VALUE" ;;
  _exec-dockerd) shift; exec_dockerd "$@" ;;
  status) running_pid >/dev/null && answers ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
