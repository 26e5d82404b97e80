#!/usr/bin/env bash
# Our images in CI, built by images/build.sh (the same base, build order and tags as on a developer's machine).
#
#   .github/scripts/images.sh push ARCH      build every image natively and push <registry>/<service>:<sha>-<ARCH>
#   .github/scripts/images.sh manifest ARCH… join the per-architecture images into one manifest list per service,
#                                            tagged <sha> (and the version on a v*.*.* tag); digests → image-digests.json
#   .github/scripts/images.sh archive DIR    build every image and save it as DIR/<service>.tar (for `kind load`)
#
# images/build.sh bootstraps its Debian trixie base with debootstrap from the machine's own Debian mirror, so the
# build runs in a Debian trixie container (GitHub's runners are Ubuntu), privileged for buildah, with the repository
# mounted. Environment: REGISTRY (default ghcr.io/<owner>/<repo>, lowercased as GHCR requires), GITHUB_SHA,
# GITHUB_REF_NAME/GITHUB_REF_TYPE, GITHUB_ACTOR and REGISTRY_TOKEN (a token allowed to write packages).
set -euo pipefail
cd "$(dirname "$0")/../.."

registry=${REGISTRY:-ghcr.io/${GITHUB_REPOSITORY,,}}
services=$(cd images && for d in */Dockerfile; do printf '%s ' "${d%/Dockerfile}"; done)

log() { printf '[ci-images] %s\n' "$*" >&2; }

# Runs a command in a privileged Debian trixie container with the repository at /src.
in_debian() {
  docker run --rm --privileged -v "$PWD:/src" -w /src \
    -e REGISTRY="$registry" -e GITHUB_SHA -e GITHUB_ACTOR -e REGISTRY_TOKEN \
    debian:trixie bash -euo pipefail -c "$1"
}

# What images/build.sh needs inside the container; vfs storage because overlay cannot nest in Docker's overlay.
readonly PREPARE='export DEBIAN_FRONTEND=noninteractive STORAGE_DRIVER=vfs
apt-get update -qq
apt-get install -y -qq --no-install-recommends buildah debootstrap ca-certificates nodejs npm >/dev/null
npm ci --no-fund --no-audit >/dev/null
IMAGE_TAG=ci images/build.sh all'

login() { printf '%s' "$REGISTRY_TOKEN" | "$@" login --username "$GITHUB_ACTOR" --password-stdin "${registry%%/*}" >/dev/null; }

case "${1:-}" in
  push)
    arch=${2:?usage: images.sh push ARCH}
    in_debian "$PREPARE
printf '%s' \"\$REGISTRY_TOKEN\" | buildah login --username \"\$GITHUB_ACTOR\" --password-stdin \"\${REGISTRY%%/*}\" >/dev/null
for s in $services; do
  buildah push --quiet mail/\$s:ci docker://\$REGISTRY/\$s:\$GITHUB_SHA-$arch
done"
    log "pushed $services for $arch"
    ;;
  manifest)
    shift
    [ $# -gt 0 ] || { log "usage: images.sh manifest ARCH…"; exit 2; }
    login buildah
    digests=image-digests.json
    printf '{' >"$digests"
    sep=
    for s in $services; do
      list="mail-ci-$s"
      buildah manifest rm "$list" >/dev/null 2>&1 || true
      buildah manifest create "$list" >/dev/null
      for arch in "$@"; do buildah manifest add "$list" "docker://$registry/$s:$GITHUB_SHA-$arch" >/dev/null; done
      buildah manifest push --all --digestfile "$s.digest" "$list" "docker://$registry/$s:$GITHUB_SHA"
      if [ "${GITHUB_REF_TYPE:-}" = tag ]; then buildah manifest push --all "$list" "docker://$registry/$s:$GITHUB_REF_NAME"; fi
      digest=$(cat "$s.digest")
      [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || { log "$s: unexpected digest '$digest'"; exit 1; }
      printf '%s"%s":"%s"' "$sep" "$s" "$digest" >>"$digests"
      sep=,
      rm -f "$s.digest"
    done
    printf '}\n' >>"$digests"
    log "digests: $(cat "$digests")"
    ;;
  archive)
    dir=${2:?usage: images.sh archive DIR}
    mkdir -p "$dir"
    # Tagged as the ci stack references them (imagesRegistry mail, imagesTag ci).
    in_debian "$PREPARE
for s in $services; do buildah push --quiet mail/\$s:ci docker-archive:$dir/\$s.tar:mail/\$s:ci; done"
    log "saved $services to $dir"
    ;;
  *)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac
