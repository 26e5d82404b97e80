#!/bin/bash
# Webmail: assemble Roundcube's, PHP-FPM's and nginx's rendered config from the mounts, prepare the SQLite database
# on the data volume, run PHP-FPM and nginx in the foreground as the image's unprivileged user, reload both on a
# config or certificate change. Roundcube reads its PHP config on every request; the reload drops PHP's caches.
set -uo pipefail
SVC=webmail
EXTRA_WATCH=${EXTRA_WATCH-/etc/mail/tls}
DATA_DIR=${DATA_DIR:-/var/lib/webmail}
LOG_PIPE=/run/webmail/log
# shellcheck source=images/common/mailconf.sh
. /usr/local/lib/mail/mailconf.sh

# The rendered files name the live paths; a candidate is checked through copies pointed at its own directory.
mc_validate() {
  local dir=$1 f out rc=0
  for f in "$dir"/*.php; do out=$(php -l "$f" 2>&1) || { echo "$out"; return 1; }; done
  sed "s#$LIVE/#$dir/#g" "$dir/nginx.conf" >"$dir/.check-nginx.conf"
  out=$(nginx -e stderr -t -q -c "$dir/.check-nginx.conf" 2>&1) || { echo "$out"; rc=1; }
  if [ "$rc" = 0 ]; then out=$(php-fpm -t -y "$dir/php-fpm.conf" 2>&1) || { echo "$out"; rc=1; }; fi
  rm -f "$dir/.check-nginx.conf"
  return "$rc"
}
# An override of a PHP file continues the rendered one: its own opening tag would be a syntax error there.
mc_merge() {
  case $1 in
    *.php) { printf '\n// --- user override (%s) ---\n' "$2"; sed '1s/^<?php//' "$2"; } >>"$1" ;;
    *) mc_append "$1" "$2" ;;
  esac
}
mc_reload() { kill -HUP "$daemon" && kill -USR2 "$fpm"; }
# nginx finishes the requests in flight (QUIT: graceful stop); PHP-FPM gets mc_supervise's TERM once nginx is gone.
# (Called from mc_supervise's SIGTERM trap, which shellcheck cannot see.)
# shellcheck disable=SC2317
mc_stop() { kill -QUIT "$daemon"; }

mkdir -p /tmp/nginx
# nginx's access log and PHP-FPM's log go to the container's stdout through a pipe: both open their log by path, and
# the container's own stdout (/dev/stdout) belongs to root, so the unprivileged user cannot open it again. The
# entrypoint keeps the pipe open for writing, so the reader never sees an end while a daemon reopens its log.
rm -f "$LOG_PIPE" && mkfifo -m 600 "$LOG_PIPE" || exit 1
exec 3<>"$LOG_PIPE"
cat "$LOG_PIPE" &
log_reader=$!
# Roundcube encrypts the IMAP password in the session with des_key: one per installation, made on first start and
# kept on the volume (never in the image, the config or the program's state).
if [ ! -s "$DATA_DIR/des_key" ]; then
  umask 077
  head -c 18 /dev/urandom | base64 >"$DATA_DIR/des_key.tmp" && mv "$DATA_DIR/des_key.tmp" "$DATA_DIR/des_key" || exit 1
  umask 022
  mc_log "generated des_key on $DATA_DIR"
fi
mc_initial
# A new installation's tables, or a package upgrade's schema changes (Roundcube records the applied version).
/usr/share/roundcube/bin/updatedb.sh --package=roundcube --dir=/usr/share/roundcube/SQL || exit 1

php-fpm -F -y "$LIVE/php-fpm.conf" &
fpm=$!
MC_ALSO_STOP="$fpm $log_reader"
mc_supervise nginx nginx -e stderr -c "$LIVE/nginx.conf"
