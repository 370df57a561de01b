#!/usr/bin/env bash
# The compose lab's failover check, start to finish, on one machine (as root):
#   private Docker engine -> local base image -> app image -> docker-compose up -> failover check -> verdict
#   -> docker-compose down -> engine stopped.
#
#   test/compose/run.sh                  run everything (exit 0 when the verdict is PASS)
#   CTSD_KEEP=1 test/compose/run.sh      leave the lab and the engine up afterwards (to look around)
#
# The check, today (the daemon is not there yet): keepalived elects fw1; a new TCP connection from the client
# reaches the server through the VIPs; a long-lived TCP echo stream runs; fw1 "loses power" (SIGKILL of its
# container, links gone); fw2 must hold both VIPs and new connections must work through it. The stream's
# fate is reported: without ctsync it dies (fw2 has tcp_loose=0 and no conntrack entry for it), which is the
# control case of issue 4. With CTSYNC_DAEMON=1 (once `ctsync daemon` exists) the stream must survive, with
# its gap reported, and that becomes part of the verdict.
#
# Network: building the base image needs the Debian mirror (apt's, ~45 s, cached afterwards in the engine's
# data root); nothing else needs the network. The app comes from this checkout's node_modules (a prior
# `npm ci`, as .ci/run does) and is compiled into a staging copy, never in the checkout.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DOCKER_BIN="${DOCKER_BIN:-/usr/bin/docker}"
STATE="${CTSD_DOCKER_DIR:-/tmp/ctsd-docker}"
STAGE="$STATE/context"
PROJECT="${CTSD_COMPOSE_PROJECT:-ctsdlab}"
APP_IMAGE=ctsync-lab:local
export CTSYNC_BASE=ctsync-base:local
export CTSYNC_DAEMON="${CTSYNC_DAEMON:-1}"
export COMPOSE_PROJECT_NAME="$PROJECT"
# A fresh peer-link key per run (used when CTSYNC_DAEMON=1).
export CTSYNC_LAB_KEY="${CTSYNC_LAB_KEY:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}"

T_START=$(date +%s.%N)
declare -a TIMES=()
step_t0=0
step() { step_t0=$(date +%s.%N); printf '\n== %s\n' "$*"; }
step_done() { TIMES+=("$(printf '%-28s %6.1f s' "$1" "$(echo "$(date +%s.%N) - $step_t0" | bc)")"); }
log() { printf '   %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "test/compose/run.sh: SKIP: needs root (dockerd, network namespaces)" >&2; exit 77; }
command -v bc >/dev/null || apt-get install -y bc >/dev/null

compose() { docker-compose -f "$ROOT/docker-compose.yml" --project-directory "$ROOT" "$@"; }
# Container ids by service, filled after `up` (names differ between compose v1 and v2).
declare -A CID=()
dexec() { "$DOCKER_BIN" exec "${CID[$1]}" "${@:2}"; }

ENGINE_STARTED=0
teardown() {
  local rc=$?
  set +e
  if [ "${CTSD_KEEP:-0}" = 1 ]; then
    echo "CTSD_KEEP=1: lab left running; DOCKER_HOST=unix://$STATE/docker.sock; stop: docker/engine.sh stop"
    exit $rc
  fi
  step "teardown"
  if [ -n "${DOCKER_HOST:-}" ] && "$ROOT/docker/engine.sh" status; then
    compose down --volumes --remove-orphans --timeout 2 2>&1 | sed 's/^/   /'
    left="$("$DOCKER_BIN" ps -aq --filter "label=com.docker.compose.project=$PROJECT")"
    nets="$("$DOCKER_BIN" network ls -q --filter "label=com.docker.compose.project=$PROJECT")"
    if [ -z "$left$nets" ]; then log "down: no containers or networks of the lab remain"
    else log "down left containers [$left] networks [$nets]"; rc=1; fi
  fi
  [ "$ENGINE_STARTED" = 1 ] && "$ROOT/docker/engine.sh" stop 2>&1 | sed 's/^/   /'
  step_done teardown
  printf '\ntimings:\n'; printf '   %s\n' "${TIMES[@]}"
  printf '   %-28s %6.1f s\n' total "$(echo "$(date +%s.%N) - $T_START" | bc)"
  exit $rc
}
trap teardown EXIT
trap 'exit 130' INT TERM

step "engine"
"$ROOT/docker/engine.sh" status || ENGINE_STARTED=1
eval "$("$ROOT/docker/engine.sh" start)"
step_done engine

step "base image (debootstrap; Debian mirror needed on a cold cache)"
"$ROOT/docker/base-image.sh"
step_done base-image

step "app image"
# Staging copy: the project's inputs plus the host-built node_modules (dev dependencies pruned, offline),
# compiled here (tsc), so the image matches this checkout's src/ and the checkout itself is never written.
[ -d "$ROOT/node_modules/.ctsync-netlink" ] || { echo "node_modules missing or without the patched netlink build: run npm ci first" >&2; exit 1; }
rm -rf "$STAGE"; mkdir -p "$STAGE/.ctsync-prebuilt"
cp -a "$ROOT/package.json" "$ROOT/package-lock.json" "$ROOT/tsconfig.json" "$ROOT/scripts" "$ROOT/patches" \
      "$ROOT/src" "$ROOT/docker" "$STAGE/"
[ -d "$ROOT/bench" ] && cp -a "$ROOT/bench" "$STAGE/"
cp -a "$ROOT/node_modules" "$STAGE/node_modules"
( cd "$STAGE" \
  && node node_modules/typescript/bin/tsc -p tsconfig.json --outDir .ctsync-prebuilt/dist \
  && npm prune --omit=dev --offline --no-audit --no-fund --loglevel=error >/dev/null \
  && mv node_modules .ctsync-prebuilt/node_modules \
  && cp "$ROOT/package-lock.json" package-lock.json )
"$DOCKER_BIN" build -q -f "$STAGE/docker/Dockerfile" --build-arg BASE="$CTSYNC_BASE" -t "$APP_IMAGE" "$STAGE" >/dev/null
log "$("$DOCKER_BIN" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$APP_IMAGE")"
step_done app-image

step "docker-compose up"
compose up -d --no-build 2>&1 | sed 's/^/   /'
for svc in fw1 fw2 client server redis; do CID[$svc]="$(compose ps -q "$svc")"; done
step_done compose-up

step "election"
master=""
for _ in $(seq 1 100); do
  s1="$(dexec fw1 cat /run/ctsd/vrrp-state 2>/dev/null || true)"; s2="$(dexec fw2 cat /run/ctsd/vrrp-state 2>/dev/null || true)"
  if [ "$s1" = MASTER ] && [ "$s2" = BACKUP ]; then master=fw1; break; fi
  sleep 0.2
done
has_vips() { dexec "$1" ip -o -4 addr show | grep -c -E ' 10\.231\.(1|2)\.254/' || true; }
log "fw1=$s1 fw2=$s2, VIPs on fw1: $(has_vips fw1)/2"
step_done election

FAIL=()
[ "$master" = fw1 ] && [ "$(has_vips fw1)" = 2 ] || FAIL+=("fw1 did not become MASTER with both VIPs")

step "client -> server through the VIP"
if out="$(dexec client ctsd-traffic tcp-once --host 10.231.2.10 --port 7000 2>&1 | tr '\n' ' ')"; then log "tcp-once: $out"
else FAIL+=("client could not reach the server through fw1: $out"); fi
# A new flow that is not a pure SYN from the inside must be dropped: proves the ruleset is the strict one.
if dexec server ctsd-traffic tcp-once --host 10.231.1.10 --port 7000 --connect-timeout 1 >/dev/null 2>&1; then
  FAIL+=("the server opened a connection to the client: forward policy is not strict")
else log "server -> client new TCP: dropped, as it should be"; fi
# Nothing leaves the lab: no firewall has a route to an address outside it (checked in the routing tables, so
# nothing is ever sent there), e.g. the host's own gateway; the client's only way out is through them.
host_gw="$(ip -4 route show default | awk '{ print $3; exit }')"
if [ -n "$host_gw" ]; then
  for fw in fw1 fw2; do
    if dexec "$fw" ip route get "$host_gw" >/dev/null 2>&1; then FAIL+=("$fw has a route to $host_gw, an address outside the lab")
    else log "$fw: no route to $host_gw (the host's gateway, outside the lab), as it should be"; fi
  done
fi
step_done reach

step "failover: TCP echo stream, then fw1 loses power"
STREAM="$STATE/stream.log"
"$DOCKER_BIN" exec "${CID[client]}" ctsd-traffic tcp-stream --host 10.231.2.10 --port 7000 --interval 0.05 \
  >"$STREAM" 2>&1 &
STREAM_PID=$!
# and a server-to-client UDP stream: the client sends one datagram (the flow is created from the inside), then
# the server sends one every 100 ms
USTREAM="$STATE/udp.log"
"$DOCKER_BIN" exec "${CID[client]}" ctsd-traffic udp-stream-client --host 10.231.2.10 --port 7001 >"$USTREAM" 2>&1 &
USTREAM_PID=$!
sleep 2
before="$(grep -c '^echo ' "$STREAM" || true)"
ubefore="$(grep -c '^recv ' "$USTREAM" || true)"
log "stream running: $before lines echoed"
t_kill=$(date +%s.%N)
"$DOCKER_BIN" kill -s KILL "${CID[fw1]}" >/dev/null
took=""
for _ in $(seq 1 150); do
  if [ "$(dexec fw2 cat /run/ctsd/vrrp-state 2>/dev/null)" = MASTER ] && [ "$(has_vips fw2)" = 2 ]; then
    took="$(echo "$(date +%s.%N) - $t_kill" | bc)"; break
  fi
  sleep 0.1
done
if [ -n "$took" ]; then log "fw2 MASTER with both VIPs $(printf '%.1f' "$took") s after fw1 died"
else FAIL+=("fw2 did not take over both VIPs within 15 s"); fi
# Give TCP's retransmission time to cross the takeover, then see whether echoes still flow.
sleep 4
mid="$(grep -c '^echo ' "$STREAM" || true)"
umid="$(grep -c '^recv ' "$USTREAM" || true)"
sleep 3
end="$(grep -c '^echo ' "$STREAM" || true)"
uend="$(grep -c '^recv ' "$USTREAM" || true)"
kill "$STREAM_PID" "$USTREAM_PID" 2>/dev/null || true; wait "$STREAM_PID" "$USTREAM_PID" 2>/dev/null || true
dexec client pkill -f 'ctsd-traffic tcp-stream' 2>/dev/null || true
dexec client pkill -f 'ctsd-traffic udp-stream-client' 2>/dev/null || true
# Largest gap between datagrams after the kill (the tool prints "recv SEQ GAP_MS").
ugap_ms="$(awk -v n="$ubefore" '/^recv / { c++; if (c > n && $3 > g) g = $3 } END { print g + 0 }' "$USTREAM")"
ulast="$(awk '/^recv / { c++; last = c } END { print last + 0 }' "$USTREAM")"
if [ "$((uend - umid))" -ge 15 ]; then
  ustream="survived ($ulast datagrams, largest gap ${ugap_ms} ms)"
  usurvived=1
else
  ustream="died ($((uend - umid)) datagrams in the last 3 s)"
  usurvived=0
fi
log "UDP stream through the failover: $ustream"
# Largest gap between echoes after the kill (the tool prints "echo SEQ GAP_MS").
gap_ms="$(awk -v n="$before" '/^echo / { c++; if (c > n && $3 > g) g = $3 } END { print g + 0 }' "$STREAM")"
if [ "$((end - mid))" -ge 20 ] && ! grep -qE '^(closed|error)' "$STREAM"; then
  stream="survived ($end lines echoed, largest gap ${gap_ms} ms)"
  survived=1
else
  why="$(grep -E '^(closed|error)' "$STREAM" | head -n1 || true)"
  stream="died (stalled after $mid lines${why:+, $why}; no echo in the last 3 s)"
  survived=0
fi
log "TCP stream through the failover: $stream"
step_done failover

step "new connection through fw2"
if out="$(dexec client ctsd-traffic tcp-once --host 10.231.2.10 --port 7000 2>&1 | tr '\n' ' ')"; then log "tcp-once: $out"
else FAIL+=("no new connection through fw2 after the failover: $out"); fi
step_done after-failover

if [ "$CTSYNC_DAEMON" = 1 ]; then
  [ "$survived" = 1 ] || FAIL+=("the TCP stream died although ctsync runs")
  [ "$usurvived" = 1 ] || FAIL+=("the UDP stream died although ctsync runs")
else
  log "ctsync not running (CTSYNC_DAEMON=0): the stream's fate is the control case, not part of the verdict"
fi

echo
if [ ${#FAIL[@]} -eq 0 ]; then
  echo "VERDICT: PASS compose failover: VIP moved to fw2 in $(printf '%.1f' "${took:-0}") s; TCP stream $stream; UDP stream $ustream; ctsync=$CTSYNC_DAEMON"
else
  echo "VERDICT: FAIL compose failover: ${FAIL[*]}"
  compose logs --no-color --tail 40 2>&1 | sed 's/^/   /' || true
  exit 1
fi
