#!/usr/bin/env bash
# The README's test command: gets what the tests need (tests/setup.sh), then runs every test,
# end-to-end ones against the real control plane. Arguments go to `cargo test`, e.g.
# `tests/run.sh --test e2e_backup`.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
exec cargo test --locked "$@"
