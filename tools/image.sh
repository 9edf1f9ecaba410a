#!/usr/bin/env bash
# Build the henvis container image offline, with podman, as CI does (`make image`).
#
#   tools/image.sh            base + wheels + build + SBOM (what `make image` runs)
#   tools/image.sh wheels     only the wheels, into build/wheels (what a `docker build` needs)
#
# 1. base    No registry is reachable from these machines, so the base is made from Debian
#            packages: `mmdebstrap --variant=minbase` with python3 and python3-venv, imported
#            with `podman import` as localhost/henvis-base:bookworm-<key>. The tarball is
#            cached in $HENVIS_CACHE/image and remade after BASE_MAX_AGE_DAYS, so security
#            updates arrive within a week. BASE_IMAGE=<registry image> skips this step.
# 2. wheels  Nothing is downloaded inside the container build: `pip wheel` against
#            requirements-runtime.lock (hash-checked, binary wheels only) into a wheelhouse
#            cached per lock-file hash, into build/wheels/deps; a wheel of henvis itself into
#            build/wheels/henvis.
# 3. build   `podman build` of the Dockerfile with BASE_IMAGE, the OCI labels source, revision
#            and version, tagged $IMAGE (default henvis:<version>).
# 4. SBOM    CycloneDX (JSON) of the Python packages in the image, computed inside the image by
#            cyclonedx-py against its /opt/henvis virtualenv: build/image/henvis-<version>.cdx.json.
#
# Runs as root (CI does); `tools/image.sh wheels` needs no root.
#
# Figures (seconds per step, image size, SBOM component count) go to build/image/figures.txt.
#
# Environment:
#   IMAGE               tag to build (default henvis:<pyproject version>)
#   BASE_IMAGE          base image; default: the mmdebstrap base made here
#   IMAGE_SOURCE        org.opencontainers.image.source (default: git remote origin, else a placeholder)
#   DEBIAN_MIRROR       mirror for mmdebstrap (default http://deb.debian.org/debian)
#   BASE_MAX_AGE_DAYS   remake the cached base tarball after this many days (default 7)
#   CYCLONEDX_BOM_VERSION  cyclonedx-bom release (PyPI) used for the SBOM (default below)
#   HENVIS_CACHE        cache folder (default ~/.cache/henvis)
#   PYTHON              a CPython 3.11 to run pip with (default python3.11, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PODMAN=("$ROOT/tools/podman.sh")
CACHE="${HENVIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/henvis}"
OUT="$ROOT/build/image"
WHEELS="$ROOT/build/wheels"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VERSION="$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
IMAGE="${IMAGE:-henvis:$VERSION}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_MAX_AGE_DAYS="${BASE_MAX_AGE_DAYS:-7}"
CYCLONEDX_BOM_VERSION="${CYCLONEDX_BOM_VERSION:-7.5.0}"
# The base: Debian 12 minbase, Python 3.11 with venv, and nothing of the docs or locales.
BASE_SUITE=bookworm
BASE_PACKAGES=python3,python3-venv
BASE_KEY="$(printf '%s %s %s' "$BASE_SUITE" "$BASE_PACKAGES" v1 | sha256sum | cut -c1-12)"
LOCK_KEY="$(sha256sum requirements-runtime.lock | cut -c1-16)"
mkdir -p "$OUT" "$CACHE/image"
if [[ "$(id -u)" -ne 0 && "${1:-all}" != wheels ]]; then
    echo "tools/image.sh: run it as root (mmdebstrap --mode=root, rootful podman), e.g. sudo make image" >&2
    exit 1
fi

FIGURES="$OUT/figures.txt"
step() { # step NAME COMMAND...: run it, record its seconds
    local name="$1" start
    shift
    start=$(date +%s)
    echo "== image: $name"
    "$@"
    echo "${name}_seconds $(($(date +%s) - start))" >>"$FIGURES"
}

base() {
    if [[ -n "${BASE_IMAGE:-}" ]]; then
        echo "base: $BASE_IMAGE (given)"
        return
    fi
    BASE_IMAGE="localhost/henvis-base:$BASE_SUITE-$BASE_KEY"
    local tarball="$CACHE/image/base-$BASE_SUITE-$BASE_KEY.tar"
    if [[ -f "$tarball" ]] && [[ -n "$(find "$tarball" -mtime "+$BASE_MAX_AGE_DAYS")" ]]; then
        echo "base: $tarball is older than $BASE_MAX_AGE_DAYS days, remaking it"
        rm -f -- "$tarball"
        "${PODMAN[@]}" rmi --force "$BASE_IMAGE" >/dev/null 2>&1 || true
    fi
    if [[ ! -f "$tarball" ]]; then
        # Written beside, then renamed: an interrupted run leaves no half tarball behind.
        mmdebstrap --variant=minbase --mode=root --format=tar --include="$BASE_PACKAGES" \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            "$BASE_SUITE" "$tarball.partial" "$DEBIAN_MIRROR"
        mv -- "$tarball.partial" "$tarball"
        "${PODMAN[@]}" rmi --force "$BASE_IMAGE" >/dev/null 2>&1 || true
    fi
    if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
        "${PODMAN[@]}" import --quiet --change 'CMD ["/bin/bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
    fi
    echo "base: $BASE_IMAGE"
}

wheels() {
    local house="$CACHE/wheels/$LOCK_KEY"
    if [[ ! -f "$house/.complete" ]]; then
        rm -rf -- "$house"
        mkdir -p "$house"
        "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --require-hashes \
            --only-binary=:all: -r requirements-runtime.lock -w "$house"
        touch "$house/.complete"
    fi
    rm -rf -- "$WHEELS"
    mkdir -p "$WHEELS/deps" "$WHEELS/henvis"
    cp -- "$house"/*.whl "$WHEELS/deps/"
    # henvis itself (its build backend, setuptools, comes from PyPI here, outside the image),
    # dated by the last commit: the same sources give the same wheel.
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || date +%s)" \
        "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$WHEELS/henvis" "$ROOT"
    echo "wheels: $(find "$WHEELS/deps" -name '*.whl' | wc -l) dependencies (lock $LOCK_KEY) and henvis in build/wheels"
}

build() {
    local revision source
    revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
    if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then revision="$revision-dirty"; fi
    source="${IMAGE_SOURCE:-$(git config --get remote.origin.url 2>/dev/null || echo https://example.invalid/henvis)}"
    # --layers=false: on vfs every cached layer is a full copy of the root filesystem, and
    # writing those costs more than the one RUN they would save (measured on a shared 2-core
    # machine: two stages with layers 619 s, without 173 s; this one stage without, 45 s).
    "${PODMAN[@]}" build --quiet --layers=false --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "VERSION=$VERSION" \
        --build-arg "REVISION=$revision" \
        --build-arg "SOURCE=$source" \
        --tag "$IMAGE" --file Dockerfile "$ROOT" >/dev/null
    # The store keeps only what the next build reuses.
    "${PODMAN[@]}" image prune --force >/dev/null
    echo "image: $IMAGE ($revision)"
}

sbom() {
    local tool="$CACHE/image/cyclonedx-bom-$CYCLONEDX_BOM_VERSION" sbom="$OUT/henvis-$VERSION.cdx.json"
    if [[ ! -f "$tool/.complete" ]]; then
        rm -rf -- "$tool"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check --only-binary=:all: --no-warn-conflicts \
            --target "$tool" "cyclonedx-bom==$CYCLONEDX_BOM_VERSION"
        # Run as `python3 <folder>`: no PYTHONPATH, so the tool does not count itself.
        printf 'import runpy\nrunpy.run_module("cyclonedx_py", run_name="__main__", alter_sys=True)\n' \
            >"$tool/__main__.py"
        touch "$tool/.complete"
    fi
    "${PODMAN[@]}" run --rm --read-only --network none --user 10001:10001 \
        --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
        --volume "$tool:/opt/cyclonedx:ro" --entrypoint python3 "$IMAGE" \
        /opt/cyclonedx environment --output-reproducible --output-format JSON --output-file - \
        /opt/henvis/bin/python >"$sbom.partial"
    mv -- "$sbom.partial" "$sbom"
    echo "sbom: $sbom"
}

report() {
    local size components
    size="$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")"
    components="$("$PYTHON" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["components"]))' \
        "$OUT/henvis-$VERSION.cdx.json")"
    {
        echo "image $IMAGE"
        echo "image_size_bytes $size"
        echo "sbom_components $components"
    } >>"$FIGURES"
    echo "== image figures"
    cat "$FIGURES"
}

case "${1:-all}" in
wheels) wheels ;;
all)
    : >"$FIGURES"
    start=$(date +%s)
    step base base
    step wheels wheels
    step build build
    step sbom sbom
    echo "total_seconds $(($(date +%s) - start))" >>"$FIGURES"
    report
    ;;
*)
    echo "usage: tools/image.sh [all|wheels]" >&2
    exit 2
    ;;
esac
