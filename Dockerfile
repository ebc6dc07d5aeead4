# edgeim node image. Three stages: the web app (node), then the wheel (with its compiled Cython
# extensions) and the cluster backends' wheels; the last is a slim runtime that installs
# only those wheels and runs as a non-root user. It runs `im serve` on embedded defaults,
# or as a cluster node with IM_STORE/IM_ROUTES/IM_BUS (deploy/docker-compose.yml).
#   docker build -t edgeim .
#   docker run -p 8765:8765 -p 8766:8766 -v edgeim-data:/data edgeim
# Port 8765: WebSocket clients. Port 8766: the web chat app at /, /healthz, /readyz, /metrics, the admin API
# (its token is generated into /data/admin.token unless IM_ADMIN_TOKEN is set; IM_ADMIN_TOKEN=off
# turns it off; do not publish the port to the internet).
# The web chat app (web/: the TypeScript SDK and the Vue app), built to web/app/dist; the
# wheel below takes it in as package data, so the node serves it at / of port 8766.
FROM node:20-slim AS web
WORKDIR /web
COPY web/ .
RUN npm ci --no-audit --no-fund && npm run build

FROM python:3.11-slim AS build
# build-essential for the Cython modules; the MySQL client headers for mysqlclient (the
# cluster extra: mysqlclient, redis, rocketmq-client-python)
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential default-libmysqlclient-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
COPY --from=web /web/app/dist web/app/dist
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[cluster]"

FROM python:3.11-slim
# what the cluster extra's wheels link against at run time
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /data edgeim \
 && mkdir -p /data && chown edgeim /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER edgeim
WORKDIR /data
# listen on every interface inside the container; the data dir is the volume
ENV IM_HOST=0.0.0.0 IM_PORT=8765 IM_HTTP_PORT=8766 IM_DATA_DIR=/data
EXPOSE 8765 8766
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8766/healthz', timeout=2).status != 200)"
# SIGTERM drains (clients closed with 1001, accepted writes committed) within IM_DRAIN_TIMEOUT
STOPSIGNAL SIGTERM
ENTRYPOINT ["im"]
CMD ["serve"]
