#!/usr/bin/env bash
# Sets the number of worker containers of the compose stack: scripts/scale-workers.sh N
# Removed workers get SIGTERM and finish the jobs in hand first (stop_grace_period in compose.yaml).
# Production: COMPOSE_FILES="compose.yaml compose.prod.yaml" ENV_FILE=.env.production scripts/scale-workers.sh 6
set -euo pipefail
n=${1:-}
if ! [[ "$n" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 N   (worker containers to run)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
args=()
[ -n "${ENV_FILE:-}" ] && args+=(--env-file "$ENV_FILE")
for f in ${COMPOSE_FILES:-compose.yaml}; do args+=(-f "$f"); done
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
"${compose[@]}" "${args[@]}" up -d --no-deps --no-build --no-recreate --scale "worker=$n" worker
echo "workers: $("${compose[@]}" "${args[@]}" ps -q worker | wc -l)"
