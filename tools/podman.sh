#!/usr/bin/env bash
# podman as it works on the project's machines and in CI: `tools/podman.sh <podman args>`.
#
#   --runtime runc          crun, Debian's default, fails on these machines
#   --storage-driver vfs    overlay needs kernel support these machines lack
#   --root / --runroot      a store of henvis's own under $HENVIS_CACHE (~/.cache/henvis), so
#                           the base image and the layers survive between CI runs and never
#                           mix with another podman store on the machine
#
# Containers started through this wrapper also need lowered limits
# (`--ulimit nofile=1024:1024 --ulimit nproc=4096:4096`); tools/image.sh and the smoke test
# (tests/image/test_image_smoke.py) pass them.
set -euo pipefail

CACHE="${HENVIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/henvis}"
STORE="${HENVIS_PODMAN_ROOT:-$CACHE/containers/storage}"
RUNROOT="${HENVIS_PODMAN_RUNROOT:-${XDG_RUNTIME_DIR:-/run}/henvis-containers}"
mkdir -p "$STORE" "$RUNROOT"

exec podman --runtime runc --storage-driver vfs --root "$STORE" --runroot "$RUNROOT" "$@"
