#!/usr/bin/env bash
# When the job's Environment holds a GOOGLE_CREDENTIALS secret (a service account key, JSON), makes it the Application
# Default Credentials of the following steps (GOOGLE_APPLICATION_CREDENTIALS), which both a gs:// state backend and
# the GCP provider use. The key file is readable by the runner's user only and lives in the job's temp folder.
set -euo pipefail
[ -n "${GOOGLE_CREDENTIALS:-}" ] || exit 0
file="$RUNNER_TEMP/google-credentials.json"
(umask 077 && printf '%s' "$GOOGLE_CREDENTIALS" >"$file")
echo "GOOGLE_APPLICATION_CREDENTIALS=$file" >>"$GITHUB_ENV"
