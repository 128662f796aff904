#!/usr/bin/env bash
# Build the serving image (the repository's Dockerfile) with Debian's podman and print its size.
#
#   deploy/image/build.sh [--tag rowgen:latest] [--device cpu|cuda] [--base IMAGE]
#   make image [IMAGE=rowgen:latest] [IMAGE_DEVICE=cuda] [BASE=python:3.11-slim]
#
# Without --base the base image is built from Debian's mirror first (deploy/image/base.sh), for
# a machine that reaches no image registry; elsewhere `--base python:3.11-slim` (the
# Dockerfile's default) or a plain `docker build .` does the same. podman reads
# deploy/image/containers.conf (this machine's settings) unless CONTAINERS_CONF says otherwise.
# Run as root. The last line printed is `image: TAG SIZE`.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/image/containers.conf}

tag=rowgen:latest device=cpu base=
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    *) echo "build.sh: unknown argument '$1' (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done
case "$device" in
  cpu | cuda) ;;
  *) echo "build.sh: --device must be cpu or cuda, not '$device'" >&2; exit 2 ;;
esac
if [ -z "$base" ]; then
  base=localhost/rowgen-base:bookworm
  deploy/image/base.sh "$base"
fi

# The CA bundle this machine's pip trusts (PIP_CERT, or pip's `cert` setting): where PyPI is
# reached through a TLS-intercepting proxy, pip inside the build needs it too.
cert=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
cert_args=()
if [ -n "$cert" ]; then
  cert_args=(--volume "$cert:/run/host-ca.pem:ro" --build-arg PIP_CERT=/run/host-ca.pem)
fi

start=$(date +%s)
# --format docker: the OCI image format has no HEALTHCHECK, podman would drop it.
podman build --format docker --network host "${cert_args[@]}" \
  --build-arg BASE="$base" --build-arg DEVICE="$device" --tag "$tag" .
bytes=$(podman image inspect --format '{{.Size}}' "$tag")
echo "image: $tag $(((bytes + 500000) / 1000000)) MB (DEVICE=$device, base $base, built in $(($(date +%s) - start)) s)"
