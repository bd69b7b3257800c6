#!/usr/bin/env bash
# Blue-green deployment of Inferline's API behind nginx on one host.
#
#   scripts/blue-green.sh deploy     start the idle colour, wait for /health/ready on each of its
#                                    servers, then point nginx at it (atomic file swap + reload);
#                                    the old colour keeps running for a rollback
#   scripts/blue-green.sh rollback   point nginx back at the other colour (refused unless ready)
#   scripts/blue-green.sh status     active colour and readiness of every server
#
# Settings (environment):
#   BG_BLUE_SERVERS / BG_GREEN_SERVERS  host:port of each API process of a colour
#                                       (default 127.0.0.1:3001 127.0.0.1:3002 / 127.0.0.1:3101 127.0.0.1:3102)
#   BG_START_CMD      starts (or restarts) a colour; runs with BG_COLOUR and BG_SERVERS set.
#                     Default: systemctl restart inferline-api@<port> for each server (deploy/systemd)
#   BG_UPSTREAM_FILE  the nginx file holding `upstream inferline_api` (default /etc/nginx/conf.d/upstream.conf)
#   BG_STATE_DIR      where the active colour is recorded (default /var/lib/inferline/blue-green)
#   BG_READY_TIMEOUT  seconds to wait for the new colour to be ready (default 60)
#   NGINX_TEST_CMD / NGINX_RELOAD_CMD  (default: nginx -t -q / nginx -s reload)
set -euo pipefail

BLUE_SERVERS=${BG_BLUE_SERVERS:-"127.0.0.1:3001 127.0.0.1:3002"}
GREEN_SERVERS=${BG_GREEN_SERVERS:-"127.0.0.1:3101 127.0.0.1:3102"}
UPSTREAM_FILE=${BG_UPSTREAM_FILE:-/etc/nginx/conf.d/upstream.conf}
STATE_DIR=${BG_STATE_DIR:-/var/lib/inferline/blue-green}
READY_TIMEOUT=${BG_READY_TIMEOUT:-60}
NGINX_TEST_CMD=${NGINX_TEST_CMD:-"nginx -t -q"}
NGINX_RELOAD_CMD=${NGINX_RELOAD_CMD:-"nginx -s reload"}

log() { printf 'blue-green: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

servers_of() {
  case "$1" in
    blue) echo "$BLUE_SERVERS" ;;
    green) echo "$GREEN_SERVERS" ;;
    *) die "unknown colour: $1" ;;
  esac
}
other() { if [ "$1" = blue ]; then echo green; else echo blue; fi; }
active() { cat "$STATE_DIR/active" 2>/dev/null || echo blue; }

default_start() {
  local server
  for server in $BG_SERVERS; do
    systemctl restart "inferline-api@${server##*:}.service"
  done
}

start_colour() {
  local colour=$1
  log "starting $colour ($(servers_of "$colour"))"
  if [ -n "${BG_START_CMD:-}" ]; then
    BG_COLOUR=$colour BG_SERVERS=$(servers_of "$colour") sh -c "$BG_START_CMD"
  else
    BG_COLOUR=$colour BG_SERVERS=$(servers_of "$colour") default_start
  fi
}

ready() { curl -fsS -m 2 -o /dev/null "http://$1/health/ready" 2>/dev/null; }

colour_ready() {
  local server
  for server in $(servers_of "$1"); do ready "$server" || return 1; done
}

wait_ready() {
  local colour=$1 deadline=$((SECONDS + READY_TIMEOUT))
  until colour_ready "$colour"; do
    if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    sleep 1
  done
}

upstream_block() {
  local colour=$1 server
  echo "# Written by scripts/blue-green.sh: active colour $colour."
  echo "upstream inferline_api {"
  echo "    least_conn;"
  for server in $(servers_of "$colour"); do
    echo "    server $server max_fails=2 fail_timeout=10s;"
  done
  echo "    keepalive 64;"
  echo "    keepalive_timeout 60s;"
  echo "}"
}

# Swap the upstream file in one rename, check the whole config, then reload (nginx finishes
# in-flight requests on the old workers). A config that does not pass `nginx -t` is put back.
switch_to() {
  local colour=$1 dir tmp backup
  dir=$(dirname "$UPSTREAM_FILE")
  tmp="$dir/.upstream.$$.tmp"
  backup="$STATE_DIR/upstream.previous"
  mkdir -p "$STATE_DIR"
  cp "$UPSTREAM_FILE" "$backup" 2>/dev/null || true
  upstream_block "$colour" >"$tmp"
  mv -f "$tmp" "$UPSTREAM_FILE"
  if ! sh -c "$NGINX_TEST_CMD"; then
    [ -f "$backup" ] && cp "$backup" "$UPSTREAM_FILE"
    die "nginx rejected the new upstream; kept $(active)"
  fi
  sh -c "$NGINX_RELOAD_CMD"
  printf '%s\n' "$colour" >"$STATE_DIR/active.tmp"
  mv -f "$STATE_DIR/active.tmp" "$STATE_DIR/active"
  log "nginx now sends traffic to $colour"
}

cmd_deploy() {
  local current next
  current=$(active)
  next=$(other "$current")
  start_colour "$next"
  if ! wait_ready "$next"; then
    die "refusing to switch: $next is not ready after ${READY_TIMEOUT}s; $current keeps serving"
  fi
  switch_to "$next"
  log "$current is still running: 'scripts/blue-green.sh rollback' switches back"
}

cmd_rollback() {
  local current previous
  current=$(active)
  previous=$(other "$current")
  colour_ready "$previous" || die "refusing to roll back: $previous is not ready; $current keeps serving"
  switch_to "$previous"
}

cmd_status() {
  local colour server state
  echo "active: $(active)"
  for colour in blue green; do
    for server in $(servers_of "$colour"); do
      if ready "$server"; then state=ready; else state=not-ready; fi
      echo "$colour $server $state"
    done
  done
}

case "${1:-}" in
  deploy) cmd_deploy ;;
  rollback) cmd_rollback ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 deploy|rollback|status" >&2
    exit 2
    ;;
esac
