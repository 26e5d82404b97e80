#!/bin/bash
# spamd: assemble mail.cf from the mounts, run spamd in the foreground with the arguments given (the component
# renders them), SIGHUP spamd on config change (it re-reads its config and restarts its children).
set -uo pipefail
SVC=spamassassin
EXTRA_WATCH=${EXTRA_WATCH-}
. /usr/local/lib/mail/mailconf.sh

# Lint the candidate as spamd would read it: the image's site config with this mail.cf in place.
mc_validate() {
  local dir=$1 site out rc
  site=$(mktemp -d)
  cp -a /etc/spamassassin/. "$site/"
  rm -f "$site/mail.cf"
  cp "$dir/mail.cf" "$site/mail.cf"
  out=$(spamassassin --siteconfigpath="$site" --lint 2>&1); rc=$?
  rm -rf "$site"
  [ "$rc" = 0 ] || { echo "$out"; return 1; }
}
mc_reload() { kill -HUP "$spamd"; }

mc_initial

spamd "$@" &
spamd=$!
mc_watch &
watcher=$!

stopping=0
stop() {
  stopping=1
  mc_log "SIGTERM: stopping spamd"
  kill "$watcher" 2>/dev/null
  kill -TERM "$spamd"
}
trap stop TERM INT
while kill -0 "$spamd" 2>/dev/null; do wait "$spamd"; rc=$?; done
kill "$watcher" 2>/dev/null
if [ "$stopping" = 1 ]; then mc_log "spamd stopped"; exit 0; fi
mc_log "spamd exited unexpectedly ($rc)"
exit "$rc"
