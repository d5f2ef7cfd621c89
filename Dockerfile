# Code location image for kline-pipeline: the gRPC code server the Dagster webserver and daemon
# load definitions from, and (with K8sRunLauncher) the image every run pod executes in.
# Build: docker build -t registry.example.com/kline-pipeline:0.1.0 .
# See docs/deploy.md. kline_pipeline_tests/test_deploy.py checks this file against the package.

# Stage 1: build the wheel exactly as the tests do, from only the files a wheel needs.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kline_pipeline ./kline_pipeline
COPY sql ./sql
RUN python -m pip wheel --no-cache-dir --no-deps -w /wheels .

# Stage 2: the runtime, without the sources or build tools.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home
COPY --from=build /wheels /wheels
# Install by file name, not by project name: a same-named project on PyPI must never win.
# The k8s extra adds dagster-k8s, which run pods need to load the chart's instance config.
RUN set -eu; \
    wheel="$(ls /wheels/kline_pipeline-*.whl)"; \
    python -m pip install --no-cache-dir "${wheel}[k8s]"; \
    rm -rf /wheels; \
    useradd --create-home --uid 10001 dagster; \
    mkdir -p "$DAGSTER_HOME"; \
    chown dagster "$DAGSTER_HOME"
USER dagster
WORKDIR /home/dagster
EXPOSE 3030
# Inside a container the server must listen on all interfaces so the webserver/daemon pods can
# reach it; the Kubernetes Service (not the container) decides who may connect. The Helm chart
# replaces this command with `dagster api grpc` + dagsterApiGrpcArgs; it is here for plain
# `docker run` (e.g. next to a docker-compose webserver).
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "kline_pipeline.definitions"]
