#!/usr/bin/env bash
# npm run test:deploy — every deployment artifact exercised for real:
#   1. static checks: shellcheck, yamllint, promtool (alert rules), docker-compose config, kubectl kustomize,
#      systemd-analyze verify, nginx -t (including the TLS template with a throwaway certificate)
#   2. nginx load balancing and blue-green switching with the real nginx over local API processes
#   3. the container test: image build, compose stack, deploy.sh (scripts/test-deploy-container.sh)
# SKIP_CONTAINER=1 skips step 3 (it needs root to run its own dockerd).
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$SECONDS
step() { echo "[test:deploy $((SECONDS - T0))s] $*" >&2; }
export DEBIAN_FRONTEND=noninteractive

# shellcheck source=SCRIPTDIR/install-missing.sh
source scripts/install-missing.sh
install_missing shellcheck:shellcheck yamllint:yamllint nginx:nginx-light kubectl:kubectl \
  docker-compose:docker-compose openssl:openssl promtool:prometheus

step "shellcheck"
shellcheck -x scripts/*.sh .ci/run

step "yamllint"
yamllint -s -c deploy/yamllint.yaml .github/workflows deploy/k8s deploy/prometheus deploy/grafana compose.yaml compose.prod.yaml

step "promtool: alert rules and their unit tests"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml

step "docker-compose config"
docker-compose -f compose.yaml config -q
docker-compose -f compose.yaml --profile monitoring config -q
INFERLINE_ENV_FILE=deploy/env.production.example \
  docker-compose --env-file deploy/env.production.example -f compose.yaml -f compose.prod.yaml config -q

step "kubectl kustomize deploy/k8s"
rendered=$(kubectl kustomize deploy/k8s)
for kind in Deployment Service HorizontalPodAutoscaler ScaledObject StatefulSet PodDisruptionBudget ConfigMap Secret; do
  grep -q "^kind: $kind$" <<<"$rendered" || { echo "kustomize output has no $kind" >&2; exit 1; }
done

if command -v systemd-analyze >/dev/null; then
  step "systemd-analyze verify deploy/systemd"
  units=$(mktemp -d)
  cp deploy/systemd/*.service deploy/systemd/*.target "$units/"
  for i in 3001 3002; do ln -s inferline-api@.service "$units/inferline-api@$i.service"; done
  for i in 1 2; do ln -s inferline-worker@.service "$units/inferline-worker@$i.service"; done
  SYSTEMD_UNIT_PATH="$units:" systemd-analyze verify "$units/inferline-api@3001.service" \
    "$units/inferline-worker@1.service" "$units/inferline.target"
  rm -rf "$units"
fi

step "nginx -t, with the TLS server enabled"
conf=$(mktemp -d)
cp -r deploy/nginx/. "$conf/"
sed -i "s#^pid .*#pid $conf/nginx.pid;#" "$conf/nginx.conf"
sed -i 's/server api[12]:3000/server 127.0.0.1:3000/' "$conf/conf.d/upstream.conf"
mkdir -p "$conf/live"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=api.example.com \
  -keyout "$conf/live/privkey.pem" -out "$conf/live/fullchain.pem" 2>/dev/null
sed "s#/etc/letsencrypt/live/api.example.com#$conf/live#" deploy/nginx/templates/inferline-tls.conf >"$conf/conf.d/tls.conf"
nginx -t -q -p "$conf" -c "$conf/nginx.conf" -e "$conf/error.log"
rm -rf "$conf"

step "nginx and blue-green tests (real nginx, local API processes)"
npm run build --silent
env NODE_ENV=test node --import tsx --test --test-concurrency=1 --test-timeout=300000 test/deploy/*.deploy.ts

if [ "${SKIP_CONTAINER:-0}" = 1 ]; then
  step "container test skipped (SKIP_CONTAINER=1)"
else
  step "container test"
  scripts/test-deploy-container.sh
fi
step "all deployment checks passed"
