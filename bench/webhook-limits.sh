#!/usr/bin/env bash
# The webhook server under hostile load (issue: bounded memory and connections), release build,
# loopback only, about a minute: peak RSS with 16 maximum-size reviews at once (HTTP/1.1 and one
# HTTP/2 connection) and 1,000 idle connections open; when idle, slow-header and slow-body
# connections are closed; 100,000 generated reviews without a 5xx or a lost uid. Prints a table
# with each measure's ratio to the server's idle RSS measured in the same run.
#
#   bench/webhook-limits.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 4096
exec cargo bench --quiet --bench webhook_limits
