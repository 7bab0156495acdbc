# syntax=docker/dockerfile:1
# The manager and storage images (the runner has its own: Dockerfile.runner).
#   docker build --target manager -t pagewright-manager .
#   docker build --target storage -t pagewright-storage .
ARG NODE_VERSION=24.21.0

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY common ./common
COPY runner ./runner
COPY storage ./storage
COPY manager ./manager
COPY cli ./cli
RUN npx tsc -p tsconfig.build.json
# neither service runs codex: drop its (large) native package
RUN npm prune --omit=dev --no-audit --no-fund && rm -rf node_modules/@openai/codex node_modules/@openai/codex-*

FROM node:${NODE_VERSION}-bookworm-slim AS base
RUN groupadd --gid 10001 pagewright && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin pagewright
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
ENV NODE_ENV=production
USER 10001:10001

FROM base AS manager
EXPOSE 8081
ENTRYPOINT ["node", "/app/dist/manager/main.js"]

FROM base AS storage
EXPOSE 8080
ENTRYPOINT ["node", "/app/dist/storage/main.js"]
