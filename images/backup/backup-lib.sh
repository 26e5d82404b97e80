# shellcheck shell=bash
# Shared by mail-backup and mail-restore (sourced). Settings come from the job's environment:
#   BACKUP_DOVECOT_CONF  the rendered doveadm config (components/backup/config.ts): mail_home under MAIL_ROOT
#   MAIL_ROOT MAIL_DRIVER MAIL_DIR   where homes are (<MAIL_ROOT>/<domain>/<user>) and the mail inside them
#   COUCHDB_URL COUCHDB_DATABASE COUCHDB_USER COUCHDB_PASSWORD   the datastore (the admin's credentials)
#   RESTIC_REPOSITORY RESTIC_PASSWORD (+ the backend's credentials)   restic reads these itself
BACKUP_DOVECOT_CONF=${BACKUP_DOVECOT_CONF:-/etc/mail/backup/dovecot.conf}
MAIL_ROOT=${MAIL_ROOT:-/var/mail}
MAIL_DRIVER=${MAIL_DRIVER:-maildir}
MAIL_DIR=${MAIL_DIR:-Maildir}
# What restic stores: one tree, always at this path, so a restore finds it in any snapshot.
BACKUP_STAGE=${BACKUP_STAGE:-/backup/stage}
BACKUP_TAG=${BACKUP_TAG:-mail}
export RESTIC_CACHE_DIR=${RESTIC_CACHE_DIR:-/tmp/restic-cache}

log() { printf '%s %s: %s\n' "$(date -u +%FT%TZ)" "${0##*/}" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

dadm() { doveadm -c "$BACKUP_DOVECOT_CONF" "$@"; }

# A private Dovecot with a static userdb: doveadm looks users up through an auth process, and this one needs no
# datastore. It runs only auth (no protocols), as the job's own user.
start_dovecot() {
  local base
  base=$(doveconf -c "$BACKUP_DOVECOT_CONF" -h base_dir)
  mkdir -p "$base" "$(doveconf -c "$BACKUP_DOVECOT_CONF" -h state_dir)"
  dovecot -c "$BACKUP_DOVECOT_CONF" || die "dovecot (auth for doveadm) did not start"
  trap 'dadm stop >/dev/null 2>&1 || true' EXIT
}

# Every home with mail in a tree laid out like MAIL_ROOT: prints "<user@domain> <home>" per line.
homes() {
  local root=$1 home
  for home in "$root"/*/*/; do
    home=${home%/}
    [ -d "$home/$MAIL_DIR" ] || continue
    printf '%s@%s %s\n' "${home##*/}" "$(basename "$(dirname "$home")")" "$home"
  done
}

# "mailbox<TAB>user<TAB>name<TAB>messages" for each mailbox of a user; extra args are doveadm -o settings.
mailbox_counts() {
  local user=$1
  shift
  dadm -f tab "$@" mailbox status -u "$user" messages '*' | tail -n +2 | while IFS=$'\t' read -r name count; do
    printf 'mailbox\t%s\t%s\t%s\n' "$user" "$name" "$count"
  done
}

# curl with the admin's credentials on stdin, never in argv (which /proc shows to every process of the pod).
couch() {
  local method=$1 path=$2
  shift 2
  printf 'user = "%s:%s"\n' "$COUCHDB_USER" "$COUCHDB_PASSWORD" \
    | curl -sS --fail-with-body --max-time 300 -K - -X "$method" -H 'Content-Type: application/json' "$@" "$COUCHDB_URL/$path"
}

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# Files of a home besides the mail (ManageSieve scripts, the active-script link), without Dovecot's compiled cache.
copy_home_extras() {
  local from=$1 to=$2
  mkdir -p "$to"
  tar -C "$from" --exclude="./$MAIL_DIR" --exclude=./.sieve-bin -cf - . | tar -C "$to" -xf -
}
