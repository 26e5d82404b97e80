#!/bin/bash
# Dovecot: assemble dovecot.conf (+ shipped sieve scripts) from the mounts, run in the foreground,
# `doveadm reload` on config or certificate change.
set -uo pipefail
SVC=dovecot
EXTRA_WATCH=${EXTRA_WATCH-/etc/mail/tls}
MAIL_ROOT=${MAIL_ROOT:-/var/mail}
# shellcheck source=images/common/mailconf.sh
. /usr/local/lib/mail/mailconf.sh

# doveconf fails on unknown or misplaced settings; shipped sieve scripts must compile.
mc_validate() {
  local dir=$1 f out
  out=$(doveconf -c "$dir/dovecot.conf" -n 2>&1 >/dev/null) || { echo "$out"; return 1; }
  if grep -q . <<<"$out"; then echo "$out"; return 1; fi
  for f in "$dir"/*.sieve; do
    [ -e "$f" ] || continue
    # Pre-compiled here because delivery runs as vmail and cannot write next to the script.
    sievec -c "$dir/dovecot.conf" "$f" || return 1
  done
}
mc_reload() { doveadm reload; }

mc_initial
install -d -m 755 /run/dovecot /run/dovecot-state
# The mail volume belongs to vmail: the pod has no fsGroup (it would make the TLS key readable by vmail), so its
# top is given to vmail here, once; vmail creates everything below.
if [ -d "$MAIL_ROOT" ] && [ "$(stat -c %u "$MAIL_ROOT")" != 5000 ]; then chown vmail:vmail "$MAIL_ROOT"; fi

mc_supervise Dovecot dovecot -F -c "$LIVE/dovecot.conf"
