#!/usr/bin/env bash
# Points a stack at the images the images workflow built for this commit: imagesRegistry = this repository's GHCR
# path (a fork deploys its own images) and imagesDigests.<service> = the digest recorded in $DIGESTS (JSON object
# service → sha256:…). Changes only the workspace copy of Pulumi.<stack>.yaml; nothing is committed.
#   .github/scripts/set-digests.sh STACK
set -euo pipefail
stack=${1:?usage: set-digests.sh STACK}
: "${DIGESTS:?DIGESTS must hold the digests the images workflow recorded (JSON)}"

# An empty PULUMI_BACKEND_URL means Pulumi Cloud, with the token pulumi/auth-actions exported.
pulumi login ${PULUMI_BACKEND_URL:+"$PULUMI_BACKEND_URL"} >/dev/null
pulumi stack select "$stack"
pulumi config set --stack "$stack" imagesRegistry "ghcr.io/${GITHUB_REPOSITORY,,}"
jq -r 'to_entries[] | "\(.key) \(.value)"' <<<"$DIGESTS" | while read -r service digest; do
  pulumi config set --stack "$stack" --path "imagesDigests.$service" "$digest"
done
pulumi config --stack "$stack"
