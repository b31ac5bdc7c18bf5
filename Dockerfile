# syntax=docker/dockerfile:1
#
# The kanary operator: the package and its pinned dependencies (requirements.lock) in a venv,
# on python:3.11-slim, running as uid 65532 with a read-only root filesystem
# (manifests/operator.yaml mounts an emptyDir at /tmp, the only writable path).
#
#   docker build -t kanary/operator:0.1.0 .
#
# What the local cluster's node and `make kind-up` load is not built from this file but by
# hack/images/build.sh, without a daemon: the same venv, ENV, USER, EXPOSE, ENTRYPOINT and
# labels (build.sh checks these lines and takes the labels from here), on Debian bookworm's
# python3.11 unpacked from .debs instead of python:3.11-slim (hack/images/README.md lists
# the differences). This file is kept for people building with Docker, and CI's image job
# builds it (.github/workflows/ci.yaml). Change the two together.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# The venv's path is the same in both stages: its scripts' shebangs point into it.
RUN python -m venv /opt/kanary
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY operator/ operator/
# The package (non-editable) and its runtime dependencies only; -c keeps each at the version
# in requirements.lock (which also pins the dev tools, not installed here).
RUN /opt/kanary/bin/pip install --no-cache-dir -c requirements.lock . \
 && /opt/kanary/bin/pip check \
 && /opt/kanary/bin/python -m compileall -q /opt/kanary/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kanary" \
      org.opencontainers.image.description="Kubernetes canary rollout operator" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.source="https://github.com/kanary-dev/kanary" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/kanary /opt/kanary
# Read-only root filesystem: no .pyc writes, HOME on the writable /tmp. glibc's malloc for
# Python objects, two arenas: memory freed by deleted Rollouts goes back to the OS
# (operator/kanary/memtrim.py).
ENV PATH=/opt/kanary/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONMALLOC=malloc \
    MALLOC_ARENA_MAX=2 \
    HOME=/tmp
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["kanary", "run"]
