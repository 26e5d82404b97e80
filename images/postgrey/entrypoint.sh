#!/bin/bash
# Postgrey: assemble the .local whitelists from the mounts, run postgrey in the foreground with the arguments given
# (the component renders them), SIGHUP it on change (postgrey re-reads its whitelists).
set -uo pipefail
SVC=postgrey
EXTRA_WATCH=${EXTRA_WATCH-}
# shellcheck source=images/common/mailconf.sh
. /usr/local/lib/mail/mailconf.sh

# One entry per line; postgrey would silently misread an entry with spaces.
mc_validate() {
  local f bad
  for f in "$1"/whitelist_*.local; do
    bad=$(grep -nvE '^[[:space:]]*(#.*)?$|^[^[:space:]]+$' "$f") && { echo "$(basename "$f"): bad entry: $bad"; return 1; }
  done
  return 0
}
mc_reload() { kill -HUP "$daemon"; }

mc_initial
# The database directory is created by postgrey's own user, so it owns it (the volume root belongs to root).
for arg in "$@"; do case $arg in --dbdir=*) install -d -m 700 "${arg#--dbdir=}" ;; esac; done

mc_supervise postgrey postgrey "$@"
