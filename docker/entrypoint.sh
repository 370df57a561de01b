#!/bin/bash
# Entry point of every compose-lab container; CTSD_ROLE picks what runs: fw | client | server | redis.
#
# fw      checks the sysctls compose set, loads the strict nftables ruleset, renders keepalived.conf (and the
#         ctsync config), starts `ctsync daemon` when CTSYNC_DAEMON=1, then runs keepalived in the foreground.
# client  routes the outside network through the inside VIP, then idles (tests `docker exec` traffic).
# server  routes the inside network through the outside VIP, runs TCP echo and UDP stream servers.
# redis   runs redis-server on the sync network.
# Any other arguments are run instead (`docker-compose run fw1 bash`).
set -euo pipefail

log() { printf '[%s] %s\n' "${CTSD_NODE:-$(hostname)}" "$*"; }
die() { log "error: $*" >&2; exit 1; }

# The interface that carries ADDR (compose attaches networks in no fixed order, so eth0/eth1 mean nothing).
iface_of() {
  local ip="$1" dev
  for _ in $(seq 1 50); do
    dev="$(ip -o -4 addr show | awk -v a="$ip" '{ split($4, p, "/"); if (p[1] == a) { print $2; exit } }')"
    [ -n "$dev" ] && { echo "$dev"; return 0; }
    sleep 0.1
  done
  die "no interface has address $ip (check the ipv4_address values in docker-compose.yml)"
}

# Docker gives containers a default route to its bridge even on internal networks when it runs without
# iptables (the bridge is a dead end in the engine's netns, but the route is misleading): drop it, so the
# only routes are the connected subnets and what CTSD_ROUTES says.
drop_docker_default() {
  if ip route show default | grep -q .; then ip route del default; log "removed Docker's default route"; fi
}

add_route() {
  # CTSD_ROUTES: "PREFIX via GW[, PREFIX via GW...]"
  local r
  drop_docker_default
  IFS=',' read -ra routes <<<"${CTSD_ROUTES:-}"
  for r in "${routes[@]}"; do
    r="$(echo "$r" | xargs)"; [ -n "$r" ] || continue
    # shellcheck disable=SC2086
    ip route replace $r
    log "route $r"
  done
}

require_sysctl() {
  local key="$1" want="$2" have
  have="$(sysctl -n "$key" 2>/dev/null || echo missing)"
  [ "$have" = "$want" ] || die "sysctl $key is $have, want $want (set it under sysctls: in docker-compose.yml)"
}

render() {
  # render TEMPLATE OUT: replace @NAME@ with the values below
  sed -e "s|@NODE@|$CTSD_NODE|g" -e "s|@PEER_NODE@|${CTSD_PEER_NODE:-}|g" \
      -e "s|@PRIORITY@|$CTSD_PRIORITY|g" -e "s|@ADVERT@|${CTSD_ADVERT_INT:-1}|g" \
      -e "s|@IN_IF@|$IN_IF|g" -e "s|@OUT_IF@|$OUT_IF|g" -e "s|@SYNC_IF@|$SYNC_IF|g" \
      -e "s|@INSIDE_IP@|$CTSD_INSIDE_IP|g" -e "s|@OUTSIDE_IP@|$CTSD_OUTSIDE_IP|g" -e "s|@SYNC_IP@|$CTSD_SYNC_IP|g" \
      -e "s|@PEER_INSIDE@|$CTSD_PEER_INSIDE|g" -e "s|@PEER_OUTSIDE@|$CTSD_PEER_OUTSIDE|g" \
      -e "s|@PEER_SYNC@|$CTSD_PEER_SYNC|g" \
      -e "s|@VIP_INSIDE@|$CTSD_VIP_INSIDE|g" -e "s|@VIP_OUTSIDE@|$CTSD_VIP_OUTSIDE|g" \
      "$1" >"$2"
}

run_fw() {
  : "${CTSD_NODE:?}" "${CTSD_PRIORITY:?}" "${CTSD_INSIDE_IP:?}" "${CTSD_OUTSIDE_IP:?}" "${CTSD_SYNC_IP:?}"
  : "${CTSD_PEER_INSIDE:?}" "${CTSD_PEER_OUTSIDE:?}" "${CTSD_PEER_SYNC:?}" "${CTSD_VIP_INSIDE:?}" "${CTSD_VIP_OUTSIDE:?}"
  require_sysctl net.ipv4.ip_forward 1
  require_sysctl net.netfilter.nf_conntrack_tcp_loose 0
  IN_IF="$(iface_of "$CTSD_INSIDE_IP")"; OUT_IF="$(iface_of "$CTSD_OUTSIDE_IP")"; SYNC_IF="$(iface_of "$CTSD_SYNC_IP")"
  log "inside=$IN_IF outside=$OUT_IF sync=$SYNC_IF priority=$CTSD_PRIORITY"
  drop_docker_default

  mkdir -p /run/ctsd /etc/keepalived /etc/ctsync /run/ctsync
  render /etc/ctsd/fw/ruleset.nft.in /run/ctsd/ruleset.nft
  nft -f /run/ctsd/ruleset.nft
  log "nftables ruleset loaded (forward policy drop, tcp_loose=0)"
  render /etc/ctsd/fw/keepalived.conf.in /etc/keepalived/keepalived.conf
  render /etc/ctsd/fw/ctsync.yaml.in /etc/ctsync/ctsync.yaml
  echo BACKUP >/run/ctsd/vrrp-state

  if [ "${CTSYNC_DAEMON:-1}" = 1 ]; then
    # The lab's key reaches both firewalls through the environment (see docker-compose.yml).
    [ -n "${CTSYNC_LAB_KEY:-}" ] || die "CTSYNC_LAB_KEY is empty: export CTSYNC_LAB_KEY=\$(openssl rand -hex 32) before docker-compose up"
    printf '%s\n' "$CTSYNC_LAB_KEY" >/etc/ctsync/cluster.key
    chmod 0600 /etc/ctsync/cluster.key
    log "starting ctsync daemon --config /etc/ctsync/ctsync.yaml"
    ctsync daemon --config /etc/ctsync/ctsync.yaml &
  else
    log "ctsync daemon not started (CTSYNC_DAEMON=0): keepalived only"
  fi
  exec keepalived --dont-fork --log-console --vrrp --use-file /etc/keepalived/keepalived.conf \
    --pid /run/ctsd/keepalived.pid --vrrp_pid /run/ctsd/vrrp.pid
}

run_server() {
  add_route
  ctsd-traffic tcp-server --port "${CTSD_TCP_PORT:-7000}" &
  ctsd-traffic udp-stream-server --port "${CTSD_UDP_PORT:-7001}" --interval "${CTSD_UDP_INTERVAL:-0.1}" &
  log "tcp echo on :${CTSD_TCP_PORT:-7000}, udp stream on :${CTSD_UDP_PORT:-7001}"
  wait -n
  die "a traffic server exited"
}

run_client() {
  add_route
  log "ready"
  exec sleep infinity
}

run_redis() {
  exec redis-server --bind 0.0.0.0 --port 6379 --protected-mode no --save '' --appendonly no
}

if [ $# -gt 0 ]; then exec "$@"; fi
case "${CTSD_ROLE:-}" in
  fw) run_fw ;;
  client) run_client ;;
  server) run_server ;;
  redis) run_redis ;;
  *) die "CTSD_ROLE must be fw, client, server or redis (got '${CTSD_ROLE:-}')" ;;
esac
