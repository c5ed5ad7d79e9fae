# syntax=docker/dockerfile:1
# Node 24 (active LTS): Node 20 reached end of life on 2026-04-30 and gets no security fixes.
# CI runs the whole test suite on Node 24 as well as on the build machine's Node (.ci/run).
# Build stage: compile TypeScript, then keep only production dependencies.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
COPY test ./test
RUN npx tsc -p tsconfig.json && npm prune --omit=dev

# Runtime: slim Node image; nft/ipset/iptables for the firewall agent (which runs as root with NET_ADMIN).
FROM node:24-bookworm-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends nftables ipset iptables \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json gatekeeper.example.yml ./
ENV NODE_ENV=production
# A larger young generation: fewer scavenges per request under load (measured +8% req/s, docs/performance.md).
ENV NODE_OPTIONS=--max-semi-space-size=32
# The proxy runs unprivileged; the firewall-agent service overrides this with `user: root`.
USER node
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:' + (process.env.GK_LISTEN_API_PORT || 9180) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["run", "--config", "/etc/gatekeeper/gatekeeper.yml"]
