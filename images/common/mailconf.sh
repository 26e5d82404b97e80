# shellcheck shell=bash
# Shared by the mail images' entrypoints (sourced, bash).
#
# The contract with the entrypoint that sources this file:
#   set before sourcing  SVC=NAME          required: names the config folders below and /run/mail/$SVC
#                        EXTRA_WATCH="D…"  optional: more folders whose change means validate + reload (TLS, keys)
#   must define          mc_validate DIR   checks the candidate generation DIR (a copy whose files still name the live
#                                          paths under $LIVE); prints why and returns non-zero to refuse it. Called by
#                                          mc_initial (a refusal exits 1: the pod crash-loops with the reason in its
#                                          log) and by the watcher after every change (a refusal keeps the running
#                                          config).
#                        mc_reload         makes the running daemon ($daemon) read $LIVE again. Called by the watcher
#                                          once a new generation is live; a failure is logged, nothing is rolled back.
#   may define           mc_prepare DIR    adds files to a candidate generation before it is validated (e.g. key copies
#                                          owned by the daemon's user); non-zero drops the candidate. Called by
#                                          mc_assemble, at the first start and on every change.
#                        mc_merge T SRC    merges the override SRC into the default T of the same name (default:
#                                          mc_append, the override appended). Called by mc_assemble per such file.
#                        mc_stop           ends the daemon on SIGTERM (default: SIGTERM to $daemon). Called once, from
#                                          mc_supervise's trap.
#                        MC_ALSO_STOP      space-separated PIDs of helpers to end when the daemon is gone.
#   then calls           mc_initial        assemble, validate and activate the first generation (exits on failure);
#                        mc_supervise NAME CMD…  runs CMD in the background as $daemon beside the watcher, until it exits.
# Define the hooks after sourcing (this file defines the default mc_stop); mc_prepare and mc_merge are looked up when
# called. Also for the entrypoint: mc_log, mc_files, mc_append, $LIVE (the live generation), $RUN_DIR.
#
# Config comes from Kubernetes volumes:
#   /etc/mail/defaults/$SVC   ConfigMap rendered by the program
#   /etc/mail/overrides/$SVC  optional user ConfigMap: a file named like a default is merged into it
#                             (appended: later settings win in dovecot.conf and opendkim.conf, table
#                             entries are added; an entrypoint may define mc_merge), others are added
# The live config is a generation directory behind the symlink /run/mail/$SVC/live, switched atomically.
# A polling watcher (no inotify: it also sees Secret/ConfigMap `..data` swaps on any filesystem) fingerprints
# the mounts and, on change, assembles + validates a new generation, then reloads — or keeps the old one.

: "${SVC:?SVC must be set}"
DEFAULTS_DIR=${DEFAULTS_DIR:-/etc/mail/defaults/$SVC}
OVERRIDES_DIR=${OVERRIDES_DIR:-/etc/mail/overrides/$SVC}
RUN_DIR=/run/mail/$SVC
LIVE=$RUN_DIR/live
WATCH_INTERVAL=${WATCH_INTERVAL:-5}
# Space-separated extra directories whose changes need a reload (TLS, keys); set by the entrypoint.
EXTRA_WATCH=${EXTRA_WATCH:-}

mc_log() { printf '%s %s-entrypoint: %s\n' "$(date -u +%FT%TZ)" "$SVC" "$*" >&2; }

# Visible files of a mounted directory (Kubernetes keeps its own bookkeeping in `..*` entries).
mc_files() { [ -d "$1" ] && find -L "$1" -mindepth 1 -maxdepth 1 -type f ! -name '..*' -printf '%f\n' | LC_ALL=C sort; }

mc_fingerprint() {
  local d f
  for d in "$DEFAULTS_DIR" "$OVERRIDES_DIR" $EXTRA_WATCH; do
    for f in $(mc_files "$d"); do printf '%s/%s ' "$d" "$f"; sha256sum <"$d/$f"; done
  done | sha256sum | cut -d' ' -f1
}

mc_append() { { printf '\n# --- user override (%s) ---\n' "$2"; cat "$2"; } >>"$1"; }

# Builds a new generation directory from the mounts; prints its path.
mc_assemble() {
  local gen f
  gen=$(mktemp -d "$RUN_DIR/gen.XXXXXX")
  chmod 755 "$gen"
  [ -n "$(mc_files "$DEFAULTS_DIR")" ] || { mc_log "no config in $DEFAULTS_DIR"; rm -rf "$gen"; return 1; }
  for f in $(mc_files "$DEFAULTS_DIR"); do cp -L "$DEFAULTS_DIR/$f" "$gen/$f"; done
  for f in $(mc_files "$OVERRIDES_DIR"); do
    if [ -f "$gen/$f" ]; then
      mc_log "override: merging $f"
      if declare -F mc_merge >/dev/null; then mc_merge "$gen/$f" "$OVERRIDES_DIR/$f"; else mc_append "$gen/$f" "$OVERRIDES_DIR/$f"; fi \
        || { rm -rf "$gen"; return 1; }
    else
      mc_log "override: adding $f"
      cp -L "$OVERRIDES_DIR/$f" "$gen/$f"
    fi
  done
  # Service-specific extras (e.g. private key copies) when the entrypoint defines mc_prepare.
  if declare -F mc_prepare >/dev/null; then mc_prepare "$gen" || { rm -rf "$gen"; return 1; }; fi
  printf '%s\n' "$gen"
}

# Points `live` at a generation atomically and drops older generations.
mc_activate() {
  local gen=$1 old
  ln -sfn "$(basename "$gen")" "$RUN_DIR/live.tmp"
  mv -T "$RUN_DIR/live.tmp" "$LIVE"
  for old in "$RUN_DIR"/gen.*; do [ "$old" = "$gen" ] || rm -rf "$old"; done
}

# First start: a bad config is fatal (the pod crash-loops with the reason in its log).
mc_initial() {
  local gen out
  mkdir -p "$RUN_DIR"
  gen=$(mc_assemble) || exit 1
  if ! out=$(mc_validate "$gen" 2>&1); then
    mc_log "config invalid, not starting: $out"
    exit 1
  fi
  mc_activate "$gen"
  mc_log "config $(mc_fingerprint | cut -c1-12) active"
}

# Runs in the background for the container's life: validate + activate + mc_reload on change.
mc_watch() {
  local last now gen out
  last=$(mc_fingerprint)
  while sleep "$WATCH_INTERVAL"; do
    now=$(mc_fingerprint)
    [ "$now" = "$last" ] && continue
    last=$now
    mc_log "change detected (${now:0:12}), validating"
    gen=$(mc_assemble) || continue
    if ! out=$(mc_validate "$gen" 2>&1); then
      mc_log "config REJECTED, keeping the running one: $out"
      rm -rf "$gen"
      continue
    fi
    mc_activate "$gen"
    if out=$(mc_reload 2>&1); then
      mc_log "reloaded with config ${now:0:12}"
    else
      mc_log "reload FAILED: $out"
    fi
  done
}

# Runs the daemon (the arguments after NAME) in the background beside the config watcher until it exits; its PID is
# $daemon, for mc_reload and mc_stop. SIGTERM calls mc_stop (default: SIGTERM to the daemon) and, once the daemon is
# gone, exits 0; a daemon that exits by itself ends the entrypoint with its status. MC_ALSO_STOP: helper PIDs to end.
mc_stop() { kill -TERM "$daemon"; }
mc_supervise() {
  local name=$1 rc=0 stopping=0
  shift
  "$@" &
  daemon=$!
  mc_watch &
  local watcher=$!
  trap 'stopping=1; mc_log "SIGTERM: stopping $name"; kill "$watcher" 2>/dev/null; mc_stop' TERM INT
  # `wait` returns early when a trapped signal arrives; keep waiting for the daemon to finish.
  while kill -0 "$daemon" 2>/dev/null; do wait "$daemon"; rc=$?; done
  # MC_ALSO_STOP is a list of PIDs: split on purpose.
  # shellcheck disable=SC2086
  kill "$watcher" ${MC_ALSO_STOP:-} 2>/dev/null
  if [ "$stopping" = 1 ]; then mc_log "$name stopped"; exit 0; fi
  mc_log "$name exited unexpectedly ($rc)"
  exit "$rc"
}
