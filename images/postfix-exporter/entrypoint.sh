#!/bin/bash
# Postfix's metrics exporter as a sidecar. It follows the log file that Postfix's postlogd writes on a volume shared
# with the Postfix container and gives up at start when that file is missing, which it is until Postfix has started
# once: wait for it, then run the exporter in this process's place. Arguments go to the exporter.
set -euo pipefail
LOG_FILE=${POSTFIX_LOG_FILE:-/var/log/postfix/postfix.log}
waited=0
until [ -r "$LOG_FILE" ]; do
  if [ $((waited % 30)) -eq 0 ]; then echo "postfix-exporter: waiting for $LOG_FILE" >&2; fi
  sleep 1
  waited=$((waited + 1))
done
exec /usr/bin/prometheus-postfix-exporter --postfix.logfile_path="$LOG_FILE" "$@"
