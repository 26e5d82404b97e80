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

mc_initial

# Postfix stops through its own command, so the queue is flushed to disk and children finish cleanly.
# (Called from mc_supervise's SIGTERM trap, which shellcheck cannot see.)
# shellcheck disable=SC2317
mc_stop() { postfix stop; }
mc_supervise Postfix postfix start-fg
