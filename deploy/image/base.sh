#!/usr/bin/env bash
# The container base image built from Debian's own mirror, for machines that reach no image
# registry: mmdebstrap writes a minimal Debian 12 (its python3 is 3.11, as python:3.11-slim's)
# with python3-venv and ca-certificates, and `podman import` makes it an image.
#
#   deploy/image/base.sh [TAG]      default TAG: localhost/rowgen-base:bookworm
#
# Does nothing when TAG exists (`podman rmi TAG` to rebuild it). Run as root (mmdebstrap's
# root mode); needs Debian's mmdebstrap and podman. Used by deploy/image/build.sh.
set -euo pipefail
tag=${1:-localhost/rowgen-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

if podman image exists "$tag"; then
  echo "base: $tag exists"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# minbase: Priority required (apt, passwd for useradd) and no more. The merged-usr hook lays out
# merged /usr itself instead of installing usrmerge, which would pull in 47 MB of perl.
# Documentation, man pages and translations are left out as python:*-slim does; copyright
# files stay.
mmdebstrap --mode=root --variant=minbase --include=python3,python3-venv,ca-certificates \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  bookworm "$tmp/rootfs.tar" \
  "deb $mirror bookworm main" \
  "deb $mirror bookworm-updates main" \
  "deb $security bookworm-security main"

podman import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "Debian 12 minbase with python3 and python3-venv, by mmdebstrap (deploy/image/base.sh)" \
  "$tmp/rootfs.tar" "$tag"
echo "base: $tag $(podman image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec) from $mirror"
