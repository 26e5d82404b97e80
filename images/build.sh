#!/usr/bin/env bash
# Builds our images with buildah, the way CI and the e2e runner do.
#
#   images/build.sh base            bootstrap debian:trixie-slim locally (debootstrap), once per machine
#   images/build.sh NAME [NAME…]    build images/NAME/Dockerfile as mail/NAME:dev (base first if missing)
#   images/build.sh all             every images/*/Dockerfile
#
# The build context is the repository root (see .containerignore), so a Dockerfile copies
# `images/NAME/…` or `couchmail/…` by their repository paths.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tag=${IMAGE_TAG:-dev}
base_image=debian:trixie-slim
rootfs_cache=${TRIXIE_ROOTFS:-/var/tmp/mail-trixie-rootfs}

log() { printf '[images] %s\n' "$*" >&2; }

# The Debian mirror this machine's apt already uses: we never hard-code one.
debian_mirror() {
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v security | head -n1 | awk '{print ($1=="deb") ? $2 : $2}')
  [ -n "$uri" ] || { log "no Debian mirror found in /etc/apt sources"; exit 1; }
  printf '%s\n' "$uri"
}

have_image() { buildah images --quiet "$1" >/dev/null 2>&1; }

build_base() {
  if have_image "$base_image"; then log "$base_image present"; return; fi
  if [ ! -x "$rootfs_cache/bin/sh" ]; then
    log "debootstrap trixie into $rootfs_cache"
    rm -rf "$rootfs_cache.tmp"
    debootstrap --variant=minbase trixie "$rootfs_cache.tmp" "$(debian_mirror)" >/dev/null
    # Keep images small the way the official slim image does.
    rm -rf "$rootfs_cache.tmp"/var/lib/apt/lists/* "$rootfs_cache.tmp"/var/cache/apt/archives/*.deb
    mv "$rootfs_cache.tmp" "$rootfs_cache"
  fi
  log "committing $base_image"
  local ctr mnt
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$rootfs_cache"/. "$mnt"/
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$ctr"
  buildah commit --quiet "$ctr" "$base_image" >/dev/null
  buildah rm "$ctr" >/dev/null
}

build_one() {
  local name=$1 file="$repo/images/$1/Dockerfile"
  [ -f "$file" ] || { log "no Dockerfile at images/$name"; exit 1; }
  log "building mail/$name:$tag"
  # couchmail's image copies its single-file bundle: make it from the workspace's sources first.
  if [ "$name" = couchmail ]; then (cd "$repo" && npm run --silent -w couchmail bundle); fi
  buildah bud --isolation chroot --layers --pull=never --quiet \
    -f "$file" -t "mail/$name:$tag" "$repo" >/dev/null
}

[ $# -gt 0 ] || { sed -n '2,9p' "$0"; exit 2; }
build_base
[ "$1" = base ] && exit 0
if [ "$1" = all ]; then
  set --
  for d in "$repo"/images/*/Dockerfile; do d=${d%/Dockerfile}; set -- "$@" "${d##*/}"; done
fi
for name in "$@"; do build_one "$name"; done
