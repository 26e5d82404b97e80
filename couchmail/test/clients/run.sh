#!/bin/sh
# Runs inside the test-clients container (one `buildah run`). Usage: run.sh DIR SOCKETMAP_PORT DOWN_PORT
# Writes each client's output to DIR/out/*, starts Dovecot, signals DIR/out/ready, and keeps
# Dovecot up until DIR/stop appears (the test drives LMTP from outside meanwhile).
set -u
dir=$1 port=$2 down=$3
out=$dir/out
mkdir -p "$out" "$dir/run" "$dir/state"

q() { # q NAME MAP KEY [PORT]
  postmap -q "$3" "socketmap:inet:127.0.0.1:${4:-$port}:$2" >"$out/postmap.$1" 2>&1
  echo "rc=$?" >>"$out/postmap.$1"
}
q domain domains example.org
q domain-none domains else.net
q mailbox mailboxes alice@example.org
q mailbox-ext mailboxes Alice+Lists@Example.org
q mailbox-none mailboxes nobody@example.org
q alias aliases info@example.org
q alias-catchall aliases whoever@example.org
q alias-mailbox aliases bob@example.org
q sender senders info@example.org
q sender-none senders whoever@example.org
q badmap nosuchmap x
q down mailboxes alice@example.org "$down"

# The CLI next to the real sievec: a script that does not compile is refused.
printf 'require "fileinto";\nfileinto :bogus "x";\n' >"$dir/bad.sieve"
node "$dir/couchmail.js" sieve put carol@example.org <"$dir/bad.sieve" >"$out/sieve-bad" 2>&1
echo "rc=$?" >>"$out/sieve-bad"
printf 'require ["fileinto", "mailbox"];\nfileinto :create "Carol";\n' | node "$dir/couchmail.js" --json sieve put carol@example.org >"$out/sieve-good" 2>&1
echo "rc=$?" >>"$out/sieve-good"

dovecot -F -c "$dir/dovecot.conf" 2>"$out/dovecot.log" &
dpid=$!
i=0
while [ ! -S "$dir/run/auth-client" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done

doveadm -c "$dir/dovecot.conf" auth test alice@example.org 'correct horse' >"$out/auth-ok" 2>&1; echo "rc=$?" >>"$out/auth-ok"
doveadm -c "$dir/dovecot.conf" auth test alice@example.org 'wrong password' >"$out/auth-bad" 2>&1; echo "rc=$?" >>"$out/auth-bad"
doveadm -c "$dir/dovecot.conf" auth test nobody@example.org 'whatever' >"$out/auth-unknown" 2>&1; echo "rc=$?" >>"$out/auth-unknown"
doveadm -c "$dir/dovecot.conf" user alice@example.org >"$out/user" 2>&1; echo "rc=$?" >>"$out/user"
doveadm -c "$dir/dovecot.conf" user nobody@example.org >"$out/user-unknown" 2>&1; echo "rc=$?" >>"$out/user-unknown"
touch "$out/ready"

i=0
while [ ! -e "$dir/stop" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
kill "$dpid"
wait "$dpid"
