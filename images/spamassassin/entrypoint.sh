#!/bin/bash
# spamd: assemble mail.cf from the mounts, run spamd in the foreground with the arguments given (the component
# renders them), SIGHUP spamd on config change (it re-reads its config and restarts its children).
set -uo pipefail
SVC=spamassassin
EXTRA_WATCH=${EXTRA_WATCH-}
# shellcheck source=images/common/mailconf.sh
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
mc_reload() { kill -HUP "$daemon"; }

mc_initial

mc_supervise spamd spamd "$@"
