#!/bin/bash
# Postfix: assemble main.cf/master.cf from the mounts, run master in the foreground, reload on change,
# `postfix stop` on SIGTERM so queue files are closed cleanly.
set -uo pipefail
SVC=postfix
EXTRA_WATCH=${EXTRA_WATCH-/etc/mail/tls}
# shellcheck source=images/common/mailconf.sh
. /usr/local/lib/mail/mailconf.sh

# Postfix reports problems on a terminal or through its log; capture both, fail on any warning.
mc_validate() {
  local dir=$1 out
  # The data directory is an emptyDir (root-owned, 0777): `postfix check` fails on it until postfix owns it.
  install -d -o postfix -g postfix -m 700 "$(postconf -c "$dir" -h data_directory)" || return 1
  out=$(postconf -c "$dir" -n 2>&1 >/dev/null; postconf -c "$dir" -M 2>&1 >/dev/null) || { echo "$out"; return 1; }
  if grep -q . <<<"$out"; then echo "$out"; return 1; fi
  out=$(script -qec "postfix -c $dir check" /dev/null 2>&1) || { echo "$out"; return 1; }
  if grep -qE 'warning|fatal|error' <<<"$out"; then echo "$out"; return 1; fi
}
mc_reload() { postfix reload; }

# main.cf overrides replace parameters in place (a repeated parameter would be refused as a warning);
# other files (master.cf: extra services) are appended.
mc_merge() {
  local target=$1 src=$2 line
  local -a params=()
  [ "$(basename "$target")" = main.cf ] || { mc_append "$target" "$src"; return; }
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      '' | '#'*) ;;
      [[:space:]]*) [ "${#params[@]}" -gt 0 ] && params[-1]+=" ${line#"${line%%[![:space:]]*}"}" ;;
      *) params+=("$line") ;;
    esac
  done <"$src"
  [ "${#params[@]}" -eq 0 ] || postconf -c "$(dirname "$target")" -e "${params[@]}"
}

# Postfix's log goes to a file on a small volume that the metrics exporter follows. Without a writable folder for it
# (the volume not mounted on a read-only root) Postfix logs to stdout as before, and the exporter sees nothing.
mc_prepare() {
  local gen=$1 log
  # A config postconf cannot read is mc_validate's to refuse, with the reason.
  log=$(postconf -c "$gen" -h maillog_file 2>/dev/null) || return 0
  case "$log" in /dev/*) return 0 ;; esac
  if ! mkdir -p "$(dirname "$log")" 2>/dev/null || [ ! -w "$(dirname "$log")" ]; then
    mc_log "WARNING: $(dirname "$log") is not writable (no log volume?): Postfix logs to stdout only"
    postconf -c "$gen" -e maillog_file=/dev/stdout maillog_file_prefixes=/dev/stdout
  fi
}

# Copies the log file to stdout (`kubectl logs`); only lines written from now on.
MAILLOG_MAX_BYTES=${MAILLOG_MAX_BYTES:-8388608}
MAILLOG_CHECK_INTERVAL=${MAILLOG_CHECK_INTERVAL:-60}
mc_follow_log() {
  local log=$1
  [ -e "$log" ] || install -m 644 /dev/null "$log"
  exec tail -n 0 -F "$log"
}
# Keeps the volume small: past MAILLOG_MAX_BYTES the file is emptied in place. postlogd appends (O_APPEND), and both
# followers (this tail and the exporter) reread a file that shrank from its start. Renaming it (`postfix logrotate`)
# would also reload Postfix, and the exporter's tail library can miss the new file when the rename races its reads.
mc_limit_log() {
  local log=$1 size
  while sleep "$MAILLOG_CHECK_INTERVAL"; do
    size=$(stat -c %s "$log" 2>/dev/null) || continue
    [ "$size" -gt "$MAILLOG_MAX_BYTES" ] || continue
    : >"$log"
    mc_log "log file emptied at $size bytes"
  done
}

mc_initial

MAILLOG=$(postconf -h maillog_file)
case "$MAILLOG" in
  /dev/*) ;;
  *)
    mc_follow_log "$MAILLOG" &
    follower=$!
    mc_limit_log "$MAILLOG" &
    MC_ALSO_STOP="$follower $!"
    ;;
esac

# Postfix stops through its own command, so the queue is flushed to disk and children finish cleanly; the pause lets
# the follower copy the last lines before it is stopped.
# (Called from mc_supervise's SIGTERM trap, which shellcheck cannot see.)
# shellcheck disable=SC2317
mc_stop() {
  postfix stop
  [ -z "${MC_ALSO_STOP:-}" ] || sleep 1
}
mc_supervise Postfix postfix start-fg
