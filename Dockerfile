# syntax=docker/dockerfile:1
# One image for the hive, the monitor, the worker-agent and hivectl; the
# command picks which (default: the hive):
#   docker build -t hive .
#   docker run -p 8080:8080 -p 50051:50051 -v hive-data:/var/lib/hive hive
#   docker run hive bin/hive-monitor.mjs        # the monitor
#   docker run hive bin/hivectl.mjs workers     # hivectl
# The hive and the agent start from bundles of their sources (bin/bundle.mjs,
# built below); the monitor and hivectl run their TypeScript sources
# through tsx (a runtime dependency), as with npm start. CI does not build
# or run this image; see docs/operations.md.

ARG NODE_VERSION=20.19

FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HIVE_GRPC_ADDR=0.0.0.0:50051 \
    HIVE_HTTP_ADDR=0.0.0.0:8080 \
    HIVE_DATA_DIR=/var/lib/hive
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY lib ./lib
COPY gen ./gen
COPY proto ./proto
COPY hive ./hive
COPY monitor ./monitor
COPY worker-agent ./worker-agent
COPY hivectl ./hivectl
COPY deploy/healthcheck.mjs ./deploy/healthcheck.mjs
# The agent and the hive run from bundled modules (bin/bundle.mjs), built here once.
RUN node --input-type=module -e "const { bundledAgent, bundledHive } = await import('./bin/bundle.mjs'); await bundledAgent(); await bundledHive();"
# The embedded database and the generated admin token (and an agent's
# token file); owned by the
# unprivileged user the processes run as.
RUN mkdir -p /var/lib/hive /var/lib/hive-agent && chown node:node /var/lib/hive /var/lib/hive-agent
USER node
VOLUME ["/var/lib/hive"]
EXPOSE 8080 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "deploy/healthcheck.mjs", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["node"]
CMD ["bin/hive.mjs"]
