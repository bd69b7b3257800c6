#!/usr/bin/env bash
# Deploys an image to a host running the compose stack, over SSH, and rolls back on failure.
#
#   scripts/deploy.sh deploy HOST IMAGE     e.g. scripts/deploy.sh deploy deploy@api1.example.com ghcr.io/acme/inferline:3f2c1d0
#   scripts/deploy.sh rollback HOST         back to the image deployed before the current one
#   scripts/deploy.sh status HOST
#
# On HOST, DEPLOY_DIR holds .env.production (provisioned once, never copied from here); this
# script copies compose.yaml, compose.prod.yaml and deploy/nginx next to it, pulls IMAGE, restarts
# the stack with it and waits for /health/ready through nginx. If the stack is not ready within
# DEPLOY_READY_TIMEOUT seconds, it restarts the previous image and exits 1.
#
# Settings: DEPLOY_DIR (/opt/inferline), DEPLOY_PROJECT (inferline), DEPLOY_HTTP_PORT (80: nginx on
# HOST), DEPLOY_READY_TIMEOUT (120), DEPLOY_SSH (ssh command, default "ssh -o BatchMode=yes"),
# DEPLOY_PULL (1: pull IMAGE first; 0 for images already on the host).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${DEPLOY_DIR:-/opt/inferline}
PROJECT=${DEPLOY_PROJECT:-inferline}
HTTP_PORT=${DEPLOY_HTTP_PORT:-80}
READY_TIMEOUT=${DEPLOY_READY_TIMEOUT:-120}
SSH=${DEPLOY_SSH:-ssh -o BatchMode=yes}
PULL=${DEPLOY_PULL:-1}

log() { printf 'deploy: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

HOST=${2:-}
remote() {
  # shellcheck disable=SC2086 # DEPLOY_SSH is a command line
  $SSH "$HOST" "$@"
}

# Everything below runs on HOST: compose v2 plugin or v1 binary, whichever exists.
compose_cmd() {
  printf '%s' "cd '$DIR' && if docker compose version >/dev/null 2>&1; then dc='docker compose'; else dc=docker-compose; fi && \$dc -p '$PROJECT' --env-file .env.production -f compose.yaml -f compose.prod.yaml"
}

current_image() { remote "cat '$DIR/.release' 2>/dev/null || true"; }
previous_image() { remote "cat '$DIR/.release.previous' 2>/dev/null || true"; }

up_with() {
  local image=$1
  remote "$(compose_cmd) config -q"
  if [ "$PULL" = 1 ]; then
    remote "docker pull '$image'"
  fi
  local status=0
  remote "export INFERLINE_IMAGE='$image' && $(compose_cmd) up -d --no-build --remove-orphans" || status=$?
  # nginx resolves the API containers' names when it loads its config, and recreated containers
  # may come back on other addresses: reload it (a no-op if it was just recreated or is not up).
  remote "$(compose_cmd) exec -T nginx nginx -s reload" >/dev/null 2>&1 || true
  return "$status"
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  until remote "curl -fs -m 3 -o /dev/null http://127.0.0.1:$HTTP_PORT/health/ready"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 2
  done
}

record() {
  remote "printf '%s\n' '$1' > '$DIR/.release.tmp' && mv '$DIR/.release.tmp' '$DIR/.release' && printf '%s\n' '$2' > '$DIR/.release.previous'"
}

cmd_deploy() {
  local image=$1 before
  remote "test -f '$DIR/.env.production'" || die "$HOST:$DIR/.env.production is missing (see deploy/env.production.example)"
  before=$(current_image)
  log "copying compose files and nginx config to $HOST:$DIR"
  tar -C "$ROOT" -cf - compose.yaml compose.prod.yaml deploy/nginx | remote "mkdir -p '$DIR' && tar -C '$DIR' -xf -"
  log "starting $image (was: ${before:-nothing})"
  if up_with "$image" && wait_ready; then
    record "$image" "$before"
    log "$image is ready on $HOST"
    return 0
  fi
  log "$image did not become ready within ${READY_TIMEOUT}s"
  if [ -n "$before" ]; then
    log "rolling back to $before"
    if ! { up_with "$before" && wait_ready; }; then
      die "rollback to $before is not ready either: look at the host now"
    fi
    log "rolled back to $before"
  fi
  exit 1
}

cmd_rollback() {
  local current previous
  current=$(current_image)
  previous=$(previous_image)
  [ -n "$previous" ] || die "no previous release recorded on $HOST"
  log "rolling back from $current to $previous"
  up_with "$previous"
  wait_ready || die "$previous is not ready"
  record "$previous" "$current"
}

case "${1:-}" in
  deploy)
    [ $# -eq 3 ] || die "usage: $0 deploy HOST IMAGE"
    cmd_deploy "$3"
    ;;
  rollback)
    [ $# -eq 2 ] || die "usage: $0 rollback HOST"
    cmd_rollback
    ;;
  status)
    [ $# -eq 2 ] || die "usage: $0 status HOST"
    echo "release: $(current_image)"
    echo "previous: $(previous_image)"
    remote "curl -sS -m 3 http://127.0.0.1:$HTTP_PORT/health/ready; echo"
    ;;
  *)
    echo "usage: $0 deploy HOST IMAGE | rollback HOST | status HOST" >&2
    exit 2
    ;;
esac
