# syntax=docker/dockerfile:1
# validator-signer image: a wheel built in a throwaway stage, installed into a venv, copied into a
# slim Python 3.11 image without compilers or pip caches. Runs as a non-root user (10001) and works
# with a read-only root filesystem: it writes only to /var/lib/signer (data volume) and /tmp.
#
#   docker build -t validator-signer:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY signer ./signer
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/signer \
 && /opt/signer/bin/pip install /wheels/*.whl \
 && /opt/signer/bin/pip uninstall -y pip setuptools wheel || true \
 && /opt/signer/bin/python -m compileall -q /opt/signer/lib

FROM ${PYTHON_IMAGE} AS final
LABEL org.opencontainers.image.title="validator-signer" \
      org.opencontainers.image.description="Remote signer for Ethereum and CometBFT validators" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/signer/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp
RUN groupadd --system --gid 10001 signer \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/signer --no-create-home \
      --shell /usr/sbin/nologin signer \
 && mkdir -p /etc/signer /var/lib/signer /var/run/signer \
 && chown 10001:10001 /var/lib/signer \
 && python -m pip uninstall -y pip setuptools wheel >/dev/null 2>&1 || true
COPY --from=build /opt/signer /opt/signer
USER 10001:10001
WORKDIR /var/lib/signer
VOLUME ["/var/lib/signer"]
# gRPC, then metrics/health
EXPOSE 9091 9090 9000
ENTRYPOINT ["signer", "serve", "--config", "/etc/signer/signer.toml"]
