#!/usr/bin/env bash
# The whole test suite, services included: starts RabbitMQ and PostgreSQL when they are down (installing
# them on a fresh Debian-like machine), then runs every test of the workspace against them.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p concordat-bus`).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/local/services.sh
if [ $# -eq 0 ]; then set -- --workspace; fi
exec cargo test "$@"
