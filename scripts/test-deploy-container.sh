#!/usr/bin/env bash
# Container test: build the image, run the compose stack (Redis, 2 API, 2 workers, nginx), predict
# through nginx, kill a worker holding a job and see the job finish on the other one, scale the
# workers, tear down, report the image size.
#
# Needs root (it starts its own dockerd) and Debian's apt mirror. No registry is used: the base
# images the Dockerfile and compose.yaml name are built locally (debootstrap'd Debian, the host's
# node, Debian's redis-server and nginx). Cached under INFERLINE_CTR_CACHE between runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${INFERLINE_CTR_CACHE:-${TMPDIR:-/tmp}/inferline-ctr}
PROJECT=inferline-ci
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$W"
T0=$SECONDS
step() { echo "[container $((SECONDS - T0))s] $*" >&2; }

debian_mirror() {
  sed -n -E 's#^(deb|URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?://[^[:space:]]+).*#\3#p' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1
}

compose() { docker-compose -p "$PROJECT" -f "$ROOT/compose.yaml" "$@"; }

DOCKERD_PID=
cleanup() {
  set +e
  if [ -n "${DOCKER_HOST:-}" ]; then
    compose down -v -t 5 >/dev/null 2>&1
  fi
  if [ -n "$DOCKERD_PID" ]; then
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
  fi
}
trap cleanup EXIT

# shellcheck source=SCRIPTDIR/install-missing.sh
source "$ROOT/scripts/install-missing.sh"
install_missing dockerd:docker.io docker-compose:docker-compose debootstrap:debootstrap

step "start dockerd (data in $W/docker)"
dockerd --data-root "$W/docker" --exec-root "$W/docker-exec" -H "unix://$W/docker.sock" \
  --pidfile "$W/dockerd.pid" >"$W/dockerd.log" 2>&1 &
DOCKERD_PID=$!
export DOCKER_HOST="unix://$W/docker.sock"
for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
docker info >/dev/null
# Legacy builder through the docker CLI: the Dockerfile needs no BuildKit.
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=1

have() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have debian:bookworm-slim; then
  step "base image debian:bookworm-slim (debootstrap minbase)"
  if [ ! -s "$W/rootfs.tar" ]; then
    rm -rf "$W/rootfs"
    debootstrap --variant=minbase bookworm "$W/rootfs" "$(debian_mirror)" >"$W/debootstrap.log"
    rm -rf "$W"/rootfs/var/cache/apt/archives/*.deb "$W"/rootfs/var/lib/apt/lists/* \
      "$W"/rootfs/usr/share/{doc,man,locale,info}/*
    tar -C "$W/rootfs" -cf "$W/rootfs.tar.tmp" . && mv "$W/rootfs.tar.tmp" "$W/rootfs.tar"
  fi
  docker import --change 'CMD ["/bin/bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$W/rootfs.tar" debian:bookworm-slim >/dev/null
fi

if ! have node:20-bookworm-slim; then
  step "base image node:20-bookworm-slim (the host's node and npm)"
  B="$W/node-base"
  rm -rf "$B" && mkdir -p "$B"
  cp "$(readlink -f "$(command -v node)")" "$B/node"
  cp -a "$(npm root -g)/npm" "$B/npm"
  # the CA bundle lets `npm ci` inside builds pass a TLS-intercepting proxy
  cp /etc/ssl/certs/ca-certificates.crt "$B/ca-certificates.crt"
  cat >"$B/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
CMD ["node"]
DOCKERFILE
  docker build -q -t node:20-bookworm-slim "$B" >/dev/null
fi

if ! have redis:7-bookworm; then
  step "base image redis:7-bookworm (Debian redis-server)"
  R="$W/redis-base" && mkdir -p "$R"
  cat >"$R/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no"]
DOCKERFILE
  docker build -q -t redis:7-bookworm "$R" >/dev/null
fi

if ! have nginx:1.27-bookworm; then
  step "base image nginx:1.27-bookworm (Debian nginx-light)"
  N="$W/nginx-base" && mkdir -p "$N"
  cat >"$N/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends nginx-light \
 && rm -rf /var/lib/apt/lists/*
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
DOCKERFILE
  docker build -q -t nginx:1.27-bookworm "$N" >/dev/null
fi

step "compose config"
compose config -q
INFERLINE_ENV_FILE="$ROOT/deploy/env.production.example" docker-compose --env-file "$ROOT/deploy/env.production.example" \
  -f "$ROOT/compose.yaml" -f "$ROOT/compose.prod.yaml" config -q

step "build image"
compose build worker
SIZE=$(docker image inspect -f '{{.Size}}' inferline:local)
SIZE_MB=$((SIZE / 1000 / 1000))
echo "image inferline:local: ${SIZE_MB} MB"
[ "$SIZE_MB" -le 300 ] || { echo "image larger than 300 MB" >&2; exit 1; }
# Output captured before it is searched: `grep -q` stops reading at the first match, and with
# pipefail a writer still writing then fails the pipeline on a broken pipe.
help=$(docker run --rm inferline:local --help)
grep -q "worker" <<<"$help" || { echo "image does not run the CLI" >&2; exit 1; }
[ "$(docker run --rm --entrypoint id inferline:local -u)" != 0 ] || { echo "image runs as root" >&2; exit 1; }
[ -z "$(docker run --rm --entrypoint sh inferline:local -c 'ls node_modules/onnxruntime-node/bin/napi-v6 | grep -v linux')" ] \
  || { echo "other platforms' ONNX Runtime binaries left in the image" >&2; exit 1; }

# An API key for this run, made by the image itself; the stack gets its hash.
KEYS_OUT=$(docker run --rm inferline:local keys create --scope admin --name ci)
KEY=$(awk '$1 == "key" {print $2}' <<<"$KEYS_OUT")
API_KEYS=$(awk '$1 == "API_KEYS" {print $2}' <<<"$KEYS_OUT")
export API_KEYS
if [ -z "$KEY" ] || [ -z "$API_KEYS" ]; then echo "keys create printed no key" >&2; exit 1; fi
AUTH="Authorization: Bearer $KEY"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export INFERLINE_HTTP_PORT=$PORT WORKER_CONCURRENCY=1 WORKER_LOCK_DURATION_MS=4000 WORKER_STALLED_INTERVAL_MS=2000
BASE="http://127.0.0.1:$PORT"

step "compose up (redis, api1, api2, 2 workers, nginx) on :$PORT"
if ! compose up -d --no-build; then
  compose ps
  compose logs --no-color --tail 40
  exit 1
fi
ok=
for _ in $(seq 90); do
  if curl -fsS -m 2 "$BASE/health/ready" >/dev/null 2>&1; then ok=1; break; fi
  sleep 1
done
compose ps
if [ -z "$ok" ]; then
  compose logs --no-color | tail -80
  echo "stack not ready through nginx" >&2
  exit 1
fi
echo "ready: $(curl -fsS "$BASE/health/ready")"

step "predict through nginx"
out=$(curl -fsS -m 15 -XPOST "$BASE/api/ml/sentiment" -H 'content-type: application/json' -H "$AUTH" \
  -H 'Prefer: wait=10' -d '{"text":"I love this product, it works great"}')
echo "$out"
echo "$out" | grep -q '"label":"positive"' || { echo "unexpected prediction" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/metrics")
[ "$code" = 404 ] || { echo "/metrics is public ($code)" >&2; exit 1; }

step "kill the worker holding a job; the job finishes on the other worker"
workers=$(compose ps -q worker)
[ "$(echo "$workers" | wc -l)" -eq 2 ] || { echo "expected 2 worker containers" >&2; exit 1; }
job() {
  curl -fsS -XPOST "$BASE/api/ml/echo" -H 'content-type: application/json' -H "$AUTH" -d "{\"text\":\"$1\",\"sleep_ms\":6000}" |
    sed -E 's/.*"job_id":"([^"]+)".*/\1/'
}
j1=$(job one)
j2=$(job two)
# Each worker holds one job at a time (WORKER_CONCURRENCY=1): find the one that logged j1.
victim=
for _ in $(seq 50); do
  for c in $workers; do
    if grep -q "$j1" <<<"$(docker logs "$c" 2>&1)"; then victim=$c; break 2; fi
  done
  sleep 0.2
done
if [ -z "$victim" ]; then
  # The worker does not log job starts at this level: take the first one; both hold a job.
  sleep 1
  victim=$(echo "$workers" | head -n 1)
fi
docker kill "$victim" >/dev/null
survivor=$(echo "$workers" | grep -v "$victim")
done_jobs=0
for _ in $(seq 60); do
  done_jobs=0
  for j in "$j1" "$j2"; do
    curl -fsS -H "$AUTH" "$BASE/api/results/$j" 2>/dev/null | grep -q '"status":"completed"' && done_jobs=$((done_jobs + 1))
  done
  [ "$done_jobs" -eq 2 ] && break
  sleep 1
done
for j in "$j1" "$j2"; do echo "$j: $(curl -sS -H "$AUTH" "$BASE/api/results/$j")"; done
[ "$done_jobs" -eq 2 ] || { compose logs --no-color worker | tail -40; echo "a job was lost" >&2; exit 1; }
grep -q '"attempts":2' <(curl -sS -H "$AUTH" "$BASE/api/results/$j1"; curl -sS -H "$AUTH" "$BASE/api/results/$j2") \
  || { echo "no job was redelivered after the kill" >&2; exit 1; }
[ -n "$survivor" ] && docker inspect -f '{{.State.Running}}' "$survivor" | grep -q true

step "scripts/scale-workers.sh 3, then 2"
COMPOSE_PROJECT_NAME=$PROJECT "$ROOT/scripts/scale-workers.sh" 3
[ "$(compose ps -q worker | xargs docker inspect -f '{{.State.Running}}' | grep -c true)" -eq 3 ]
COMPOSE_PROJECT_NAME=$PROJECT "$ROOT/scripts/scale-workers.sh" 2
[ "$(compose ps -q worker | xargs docker inspect -f '{{.State.Running}}' | grep -c true)" -eq 2 ]

step "down"
compose down -v -t 10

step "scripts/deploy.sh with compose.prod.yaml: deploy, then a broken image rolls back"
# The dev stack's settings above must not leak into the production stack's interpolation.
unset INFERLINE_HTTP_PORT WORKER_CONCURRENCY WORKER_LOCK_DURATION_MS WORKER_STALLED_INTERVAL_MS
D=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(free_port)
HTTPS=$(free_port)
PW=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
cat >"$D/.env.production" <<ENV
REDIS_PASSWORD=$PW
REDIS_URL=redis://:$PW@redis:6379
API_KEYS=$API_KEYS
INFERLINE_HTTP_PORT=$HTTP
INFERLINE_HTTPS_PORT=$HTTPS
LETSENCRYPT_DIR=$D/letsencrypt
CERTBOT_WEBROOT=$D/certbot
ENV
# The "host" is this machine: a stand-in for ssh that runs the command locally.
cat >"$D/ssh" <<'SH'
#!/bin/sh
shift
exec sh -c "$*"
SH
chmod +x "$D/ssh"
printf 'FROM inferline:local\nENTRYPOINT ["/bin/false"]\n' | docker build -q -t inferline:broken - >/dev/null
deploy() {
  DEPLOY_SSH="$D/ssh" DEPLOY_DIR="$D" DEPLOY_PROJECT=inferline-ci-prod DEPLOY_HTTP_PORT=$HTTP \
    DEPLOY_READY_TIMEOUT=60 DEPLOY_PULL=0 "$ROOT/scripts/deploy.sh" "$@"
}
prod_down() {
  (cd "$D" && docker-compose -p inferline-ci-prod --env-file .env.production -f compose.yaml -f compose.prod.yaml ps)
  (cd "$D" && docker-compose -p inferline-ci-prod --env-file .env.production -f compose.yaml -f compose.prod.yaml down -v -t 5 >/dev/null 2>&1)
}
deploy deploy localhost inferline:local || { prod_down; exit 1; }
[ "$(cat "$D/.release")" = inferline:local ]
curl -fsS "http://127.0.0.1:$HTTP/api/ml/sentiment" -H 'content-type: application/json' -H 'Prefer: wait=10' -H "$AUTH" \
  -d '{"text":"works in production too"}' | grep -q '"status":"completed"' || { prod_down; exit 1; }
# Redis requires the password there.
(cd "$D" && docker-compose -p inferline-ci-prod --env-file .env.production -f compose.yaml -f compose.prod.yaml \
  exec -T redis redis-cli ping) | grep -q NOAUTH || { prod_down; echo "prod Redis answers without a password" >&2; exit 1; }
if deploy deploy localhost inferline:broken; then
  prod_down
  echo "deploy.sh reported success for a broken image" >&2
  exit 1
fi
[ "$(cat "$D/.release")" = inferline:local ] || { prod_down; echo "release record changed" >&2; exit 1; }
curl -fsS -m 5 "http://127.0.0.1:$HTTP/health/ready" >/dev/null || { prod_down; echo "not ready after rollback" >&2; exit 1; }
deploy status localhost
prod_down
rm -rf "$D"

echo "container test passed; image inferline:local is ${SIZE_MB} MB"
