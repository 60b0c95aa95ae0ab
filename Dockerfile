# syntax=docker/dockerfile:1
# tokenwatt node agent image.
#
#   docker build -t tokenwatt:0.1.0 .
#   docker run --rm -p 9477:9477 --read-only --tmpfs /tmp -e TOKENWATT_DB= tokenwatt:0.1.0 demo --host 0.0.0.0
#
# The demo keeps its ledger in a new file under /tmp (TOKENWATT_DB emptied: a demo refuses a ledger
# that already holds samples, so it stays off the ledger volume) and binds 127.0.0.1 unless told
# otherwise, hence --host 0.0.0.0 for the published port. `run` keeps its ledger on the volume:
#   docker run ... -v tokenwatt-ledger:/var/lib/tokenwatt tokenwatt:0.1.0 run
#
# Two stages: "build" compiles TypeScript and the native modules (better-sqlite3 from source,
# against this Node's own headers, so the addon matches the runtime's ABI and libc); "runtime"
# is the slim image with only dist/, production node_modules and package.json. On this Node the
# ledger loads better-sqlite3 13's prebuilt Node-API addon (agent/sqlite-driver.ts); both load here.

ARG NODE_IMAGE_TAG=22-bookworm

FROM node:${NODE_IMAGE_TAG} AS build
# python3, make and g++ are what node-gyp needs to compile better-sqlite3.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# node-gyp: use the headers shipped with this Node instead of downloading them;
# better-sqlite3: build from source rather than fetch a prebuilt binary.
ENV npm_config_nodedir=/usr/local \
    npm_config_build_from_source=true
COPY package.json package-lock.json ./
# Install scripts are skipped: this tree only compiles TypeScript. The native addons are built
# once, for the production tree, below.
RUN npm ci --ignore-scripts --no-audit --no-fund
# .dockerignore narrows the context to the sources, tsconfigs and schemas/ (the ESG report's schemas).
COPY . ./
RUN npm run build && mkdir -p schemas
# Production dependencies only, then compile the native addons for this target.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3 koffi \
 && node -e "for (const p of ['better-sqlite3', 'better-sqlite3-napi']) { const D = require(p); new D(':memory:').close(); } require('koffi');"

FROM node:${NODE_IMAGE_TAG}-slim AS runtime
ENV NODE_ENV=production \
    TOKENWATT_PORT=9477 \
    TOKENWATT_DB=/var/lib/tokenwatt/ledger.db
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/schemas ./schemas
# The ledger is the only thing the agent writes: a volume owned by the unprivileged user,
# so the container runs with a read-only root filesystem.
RUN groupadd --system --gid 10001 tokenwatt \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin tokenwatt \
 && mkdir -p /var/lib/tokenwatt \
 && chown 10001:10001 /var/lib/tokenwatt
VOLUME ["/var/lib/tokenwatt"]
USER 10001:10001
EXPOSE 9477
# No curl in the slim image: Node's own fetch checks /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.TOKENWATT_PORT||9477)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "--max-semi-space-size=4", "--heap-growing-percent=20", "--single-threaded-gc", "dist/agent/cli.js"]
CMD ["run"]
