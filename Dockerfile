# syntax=docker/dockerfile:1.7
# Two images from one file:
#   docker build --target gateway -t posestream-gateway .   (slim, no torch, no GPU)
#   docker build --target worker  -t posestream-worker  .   (CUDA torch + MoveNet weights)
# docker-compose.yml builds both.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# CUDA build of torch for the worker (the wheels carry the CUDA runtime; the host needs
# only the NVIDIA driver and the container toolkit).
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu124

# ---- base: python, a non-root user, a venv ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 posestream \
 && useradd --system --uid 10001 --gid posestream --home-dir /app --shell /usr/sbin/nologin posestream \
 && python -m venv /opt/venv
WORKDIR /app

# ---- gateway dependencies (no torch) --------------------------------------------------------
FROM base AS gateway-build
COPY docker/requirements-gateway.txt /tmp/requirements-gateway.txt
RUN pip install -r /tmp/requirements-gateway.txt
COPY pyproject.toml README.md ./
COPY posestream ./posestream
COPY models ./models
COPY tracker ./tracker
COPY service ./service
# --no-deps: the package's own dependency list includes torch, which the gateway never imports.
RUN pip install --no-deps . \
 && python -c "import sys, posestream.service.gateway.app; assert 'torch' not in sys.modules"

# ---- gateway image ---------------------------------------------------------------------------
FROM base AS gateway
COPY --from=gateway-build /opt/venv /opt/venv
COPY docker/healthcheck.py /app/healthcheck.py
RUN mkdir -p /data && chown posestream:posestream /data
ENV POSESTREAM_DATA_DIR=/data
USER posestream
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["python", "/app/healthcheck.py"]
CMD ["posestream", "serve", "--host", "0.0.0.0", "--port", "8000"]

# ---- worker dependencies (CUDA torch + everything) -------------------------------------------
FROM base AS worker-build
ARG TORCH_SPEC
ARG TORCH_INDEX
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"
COPY pyproject.toml README.md ./
COPY posestream ./posestream
COPY models ./models
COPY tracker ./tracker
COPY service ./service
RUN pip install .

# ---- worker image ----------------------------------------------------------------------------
FROM base AS worker
COPY --from=worker-build /opt/venv /opt/venv
# The installed package carries no weights: our checkpoints are copied to /app/weights and the
# fetched third-party files go to /app/weights/cache (Settings.weights_dir, one variable).
ENV POSESTREAM_WEIGHTS_DIR=/app/weights NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --chown=posestream:posestream weights /app/weights
COPY docker/healthcheck.py /app/healthcheck.py
RUN mkdir -p /app/weights/cache && chown -R posestream:posestream /app
USER posestream
# Third-party weights are fetched and hash-checked at build time, never committed.
RUN posestream weights fetch
# Prometheus metrics (POSESTREAM_WORKER_METRICS_PORT); the health check reads them.
EXPOSE 9101
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["python", "/app/healthcheck.py", "worker"]
STOPSIGNAL SIGTERM
CMD ["posestream", "worker"]
