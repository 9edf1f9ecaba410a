# syntax=docker/dockerfile:1
# The henvis image: one image, every part (`henvis <service> <command>`), as the Helm chart
# in helm/henvis runs it.
#
# The build downloads nothing: the wheels of every dependency and of henvis itself are built
# beforehand, outside the container, into build/wheels (`tools/image.sh wheels`: `pip wheel`
# against requirements-runtime.lock, hash-checked). Then:
#
#   make image                      # here: a Debian base made by mmdebstrap, built by podman
#   tools/image.sh wheels && docker build -t henvis:0.1.0 .    # elsewhere: a registry base
#
# BASE_IMAGE is any Debian 12 (glibc 2.36) image with Python 3.11 and its venv module on
# PATH as python3: python:3.11-slim-bookworm from a registry (the default), or the
# mmdebstrap base `make image` imports (docs/operators-guide.md, "The image").

ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# One stage, so that podman on vfs (these machines) copies the root filesystem as few times as
# possible: the wheels are bind-mounted for the one RUN that installs them, never copied into
# a layer. Exactly the versions the tests ran with, hash-checked again; then henvis without
# resolving; then pip and setuptools leave the virtualenv: nothing installs at run time.
FROM ${BASE_IMAGE}
# The chart's podSecurityContext runs as the henvis UID/GID (runAsNonRoot needs a numeric USER).
RUN --mount=type=bind,source=build/wheels,target=/wheels \
    --mount=type=bind,source=requirements-runtime.lock,target=/requirements-runtime.lock \
    export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    && groupadd --system --gid 10001 henvis \
    && useradd --system --uid 10001 --gid henvis --home-dir /tmp --no-create-home --shell /usr/sbin/nologin henvis \
    && mkdir -p /run/henvis && chown henvis:henvis /run/henvis \
    && python3 -m venv /opt/henvis \
    && /opt/henvis/bin/pip install --quiet --no-index --find-links /wheels/deps \
        --require-hashes -r /requirements-runtime.lock \
    && /opt/henvis/bin/pip install --quiet --no-index --no-deps /wheels/henvis/henvis-*.whl \
    && /opt/henvis/bin/pip check \
    && /opt/henvis/bin/pip uninstall --yes --quiet setuptools pip \
    && /opt/henvis/bin/henvis --help >/dev/null
ENV PATH=/opt/henvis/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HENVIS_RUN_DIR=/run/henvis
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["henvis"]
CMD ["--help"]
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG SOURCE=https://example.invalid/henvis
LABEL org.opencontainers.image.title="henvis" \
      org.opencontainers.image.description="Referral pipeline: police consent decisions to the municipal alcohol/drug centres" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}"
