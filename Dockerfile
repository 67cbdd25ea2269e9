# The pgdrain image: `pgdrain` is the entrypoint, `drain` the default command,
# its settings come from PGDRAIN_* variables and DATABASE_URL (deploy/k8s/).
#
#   docker build -t pgdrain .
#
# The tasks module the drain runs is /app/tasks/index.js (PGDRAIN_TASKS); this
# image ships the demo tasks there. Put your own in a derived image:
#
#   FROM pgdrain
#   COPY --chown=1000:1000 tasks/ /app/tasks/
#
# (or mount them from a ConfigMap/volume at /app/tasks).

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY scripts ./scripts
COPY sql ./sql
COPY src ./src
COPY examples ./examples
COPY functions ./functions
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    PGDRAIN_TASKS=/app/tasks/index.js
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/sql ./sql
COPY --from=build /src/dist/examples/tasks.js ./tasks/index.js
# The image's `node` user, by number, so Kubernetes' runAsNonRoot can check it.
USER 1000:1000
# Exec form: node is PID 1 and gets the kubelet's SIGTERM itself (a shell in
# between would not pass it on, and the pod would only stop at SIGKILL).
ENTRYPOINT ["node", "/app/dist/cli.mjs"]
CMD ["drain"]
