# syntax=docker/dockerfile:1
# The henvis image: one image, every part (`henvis <service> <command>`), as the Helm chart
# in helm/henvis runs it. Build: docker build -t henvis:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the package and its dependencies into a virtualenv ------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler only for dependencies that ship no wheel for this platform; it stays here.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/henvis
COPY pyproject.toml README.md requirements-runtime.lock /src/
COPY henvis /src/henvis
COPY schemas /src/schemas
COPY services /src/services
COPY devtools /src/devtools
# Exactly the versions the tests ran with (make lock), then henvis itself without resolving.
RUN /opt/henvis/bin/pip install --require-hashes -r /src/requirements-runtime.lock \
    && /opt/henvis/bin/pip install --no-deps /src \
    && /opt/henvis/bin/pip check \
    && /opt/henvis/bin/henvis --help >/dev/null

# --- runtime: the virtualenv and a non-root user, nothing else ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="henvis" \
      org.opencontainers.image.description="Referral pipeline: police consent decisions to the municipal alcohol/drug centres"
# The chart's podSecurityContext runs as this UID/GID (runAsNonRoot needs a numeric USER).
RUN groupadd --system --gid 10001 henvis \
    && useradd --system --uid 10001 --gid henvis --home-dir /tmp --no-create-home --shell /usr/sbin/nologin henvis \
    && mkdir -p /run/henvis && chown henvis:henvis /run/henvis
COPY --from=build /opt/henvis /opt/henvis
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
