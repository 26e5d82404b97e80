#!/usr/bin/env bash
# Prints the image digests (JSON) of the newest successful images run on main — what the deploy workflow last
# deployed from — so a pull request's preview compares like with like; prints nothing when there is no such run yet.
# Needs GH_TOKEN (a token with actions: read) and GitHub's CLI, which the hosted runners have.
set -euo pipefail
run=$(gh run list --repo "$GITHUB_REPOSITORY" --workflow images.yml --branch main --event push --status success --limit 1 --json databaseId --jq '.[0].databaseId // empty')
[ -n "$run" ] || exit 0
dir=$(mktemp -d)
gh run download "$run" --repo "$GITHUB_REPOSITORY" --name image-digests --dir "$dir"
jq -c . "$dir/image-digests.json"
