#!/bin/bash
# OpenDKIM: assemble config + private key copies, run as the opendkim user in the foreground,
# SIGUSR1 (OpenDKIM's own config reload) on change. Starts as root only to create /dev/log and copy keys.
set -uo pipefail
SVC=opendkim
KEYS_SRC=${KEYS_SRC:-/etc/mail/dkim}
EXTRA_WATCH=${EXTRA_WATCH-$KEYS_SRC}
# shellcheck source=images/common/mailconf.sh
. /usr/local/lib/mail/mailconf.sh

# Keys from the Secret, copied so that RequireSafeKeys holds (owner opendkim, mode 0400).
mc_prepare() {
  local gen=$1 f
  install -d -o opendkim -g opendkim -m 700 "$gen/keys"
  for f in $(mc_files "$KEYS_SRC"); do install -o opendkim -g opendkim -m 400 "$KEYS_SRC/$f" "$gen/keys/$f"; done
}
# The rendered config names the live paths; check this generation by pointing a copy at it.
mc_validate() {
  local dir=$1 rc spec key
  sed "s#$LIVE/#$dir/#g" "$dir/opendkim.conf" >"$dir/.check.conf"
  setpriv --reuid=opendkim --regid=opendkim --init-groups opendkim -n -x "$dir/.check.conf" 2>&1
  rc=$?
  rm -f "$dir/.check.conf"
  [ "$rc" = 0 ] || return 1
  # Keys are only read when signing: make a missing one fail here, not on the first message.
  while read -r _ spec; do
    key=${spec##*:}
    key=$dir/${key#"$LIVE"/}
    [ -s "$key" ] || { echo "missing DKIM key for ${spec%%:*}: ${key##*/}"; return 1; }
  done <"$dir/KeyTable"
}
mc_reload() { kill -USR1 "$daemon"; }

# RequireSafeKeys checks every directory from / down to a key: none may be world-writable. /run/mail is an
# emptyDir (0777 in Kubernetes), so without this every signing attempt fails ("key data is not secure") and
# Postfix answers 451 4.7.1 at the end of DATA. Nothing but root and opendkim's own directories lives below it.
chmod 0755 /run/mail
mc_initial

# OpenDKIM only logs to syslog: a socket owned by nobody, printed on stdout one message per line.
# /dev is a writable tmpfs in Kubernetes; where it is not, OpenDKIM runs silent rather than not at all.
sink=
install -d -o nobody -g nogroup -m 755 /run/mail/syslog
if ln -sfn /run/mail/syslog/log /dev/log 2>/dev/null; then
  setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/local/bin/syslog-sink /run/mail/syslog/log &
  sink=$!
  for _ in 1 2 3 4 5 6 7 8 9 10; do [ -S /run/mail/syslog/log ] && break; sleep 0.2; done
else
  mc_log "cannot create /dev/log: OpenDKIM's own messages are not logged"
fi

MC_ALSO_STOP=${sink:-}
mc_supervise OpenDKIM setpriv --reuid=opendkim --regid=opendkim --init-groups opendkim -f -x "$LIVE/opendkim.conf"
