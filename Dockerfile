# Inferline: one image for every role; the command picks it.
#   docker run IMAGE api        one API process (HOST=0.0.0.0, PORT=3000)
#   docker run IMAGE worker     one worker process
#   docker run IMAGE start      supervisor: API + autoscaled workers (needs REDIS_URL)
# Base images are build arguments so a mirror or a pinned digest can be passed with --build-arg.
ARG NODE_IMAGE=node:20-bookworm-slim
ARG BASE_IMAGE=debian:bookworm-slim

# --- production dependencies, ONNX Runtime trimmed to this platform -----------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# .npmrc runs no install scripts: onnxruntime-node's would download GPU binaries, and its CPU
# binaries ship in the package.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && arch="$(node -p process.arch)" \
 && for dir in node_modules/onnxruntime-node/bin/napi-v*; do \
      find "$dir" -mindepth 1 -maxdepth 1 ! -name linux -exec rm -rf {} + ; \
      find "$dir/linux" -mindepth 1 -maxdepth 1 ! -name "$arch" -exec rm -rf {} + ; \
    done \
 && test -e "node_modules/onnxruntime-node/bin/napi-v6/linux/$arch/onnxruntime_binding.node" \
 && npm cache clean --force

# --- compile TypeScript ---------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/copy-assets.mjs ./scripts/
COPY src ./src
RUN npm run build

# --- runtime: Debian slim + the node binary, no npm, no compilers ----------------------------------
FROM ${BASE_IMAGE} AS runtime
# Node carries its own CA bundle; tini is the only package added. apt's caches go in the same layer.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 inferline \
 && useradd --system --uid 10001 --gid inferline --home-dir /app --shell /usr/sbin/nologin inferline
COPY --from=deps /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY models ./models
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    LOG_LEVEL=info
USER inferline
EXPOSE 3000
# Liveness of the role PID 1 runs (tini's argv: tini -- node /app/dist/cli/index.js ROLE): api and
# start answer /health/live on PORT; a worker has no API, its metrics server (WORKER_METRICS_PORT)
# answers while its event loop runs. A worker with metrics off has nothing to ask: healthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "const e=process.env,a=require('fs').readFileSync('/proc/1/cmdline','utf8').split('\\0'),w=a[a.indexOf('/app/dist/cli/index.js')+1]==='worker';if(w&&(/^(0|false|no)$/.test(e.METRICS_ENABLED||'')||e.WORKER_METRICS_PORT==='0'))process.exit(0);fetch('http://127.0.0.1:'+(w?(e.WORKER_METRICS_PORT||9464)+'/metrics':(e.PORT||3000)+'/health/live')).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# tini as PID 1: forwards SIGTERM so API and workers drain, and reaps the supervisor's children.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cli/index.js"]
CMD ["api"]
