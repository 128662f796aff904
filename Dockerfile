# rowgen's serving image: the v2 (KServe) API over REST and gRPC, torch-free, with the bundles
# of artifacts/ baked in at /artifacts.
#
#   docker build -t rowgen .                      (make image: podman, on a base built here)
#   docker run -p 8080:8080 -p 8081:8081 rowgen   REST :8080/v2, gRPC :8081
#   docker run -p 7860:7860 rowgen python -m serve --host 0.0.0.0 --port 7860 --artifacts /artifacts
#   docker run -v $PWD/artifacts:/artifacts:ro ...   other bundles instead of the baked ones
#
# Build arguments: BASE, any Debian-based image with python3.11 and its venv module (make image
# passes one built from Debian's mirror, deploy/image/base.sh); DEVICE=cpu (default, 693 MB) or
# cuda (3.15 GB), which adds onnxruntime-gpu's CUDA and cuDNN wheels, for `--gpus all`.
# Run-time settings are the ROWGEN_* variables below. docs/deploy.md has the details.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
RUN python3 -m venv /opt/rowgen
WORKDIR /src
# Only what the wheel holds: the torch-free core and the servers (.dockerignore keeps the rest
# of the checkout out of the build context).
COPY pyproject.toml README.md ./
COPY rowgen rowgen
COPY serve serve
ARG DEVICE=cpu
# Where PyPI is reached through a TLS-intercepting proxy: the proxy's CA bundle, a path inside
# the build (build.sh mounts the host's). Unset, pip trusts its own bundle.
ARG PIP_CERT
RUN --mount=type=cache,target=/root/.cache/pip \
    case "$DEVICE" in \
      cpu) extras=serve,api ;; \
      cuda) extras=serve,api,cuda ;; \
      *) echo "DEVICE must be cpu or cuda, not '$DEVICE'" >&2; exit 2 ;; \
    esac \
    && /opt/rowgen/bin/pip install --no-compile "/src[$extras]" \
    && /opt/rowgen/bin/pip uninstall -y -q pip setuptools
# The CPU image: onnxruntime-gpu's CUDA and TensorRT providers (285 MB) can only load beside the
# CUDA libraries that DEVICE=cuda installs, so they go; `--device auto` then says CUDA is
# missing and runs on the CPU, as it would without a GPU.
RUN if [ "$DEVICE" = cpu ]; then \
      find /opt/rowgen -name 'libonnxruntime_providers_cuda.so' -delete \
      && find /opt/rowgen -name 'libonnxruntime_providers_tensorrt.so' -delete; \
    fi
# Bytecode for what the two servers import, and only that: compiling every module would add
# 158 MB. Anything else compiles in memory if it is ever imported (the image's files are
# read-only to its user). -I: from the installed packages, not /src.
RUN cd / && /opt/rowgen/bin/python -I -c "import serve.api.server, serve.api.models, serve.app.layout"

FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/rowgen rowgen
COPY --from=build /opt/rowgen /opt/rowgen
COPY --chown=root:root artifacts /artifacts
# The servers bind every interface on purpose: inside a container the published ports (or the
# pod's network) reach the process only that way. On a host, rowgen binds 127.0.0.1.
ENV PATH=/opt/rowgen/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1 \
    ORT_DISABLE_TELEMETRY=1 \
    ROWGEN_HOST=0.0.0.0 \
    ROWGEN_PORT=8080 \
    ROWGEN_GRPC_PORT=8081 \
    ROWGEN_DEVICE=auto \
    ROWGEN_ARTIFACTS=/artifacts
# A numeric user, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/rowgen
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ['ROWGEN_PORT'], timeout=4)"]
# exec: the server replaces the shell as PID 1, so SIGTERM reaches it (both servers handle it;
# PID 1 gets no default signal actions).
CMD exec python -m serve.api --host "$ROWGEN_HOST" --port "$ROWGEN_PORT" \
    --grpc-port "$ROWGEN_GRPC_PORT" --device "$ROWGEN_DEVICE" --artifacts "$ROWGEN_ARTIFACTS"
