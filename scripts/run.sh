#!/usr/bin/env bash
# Runs the broker with its embedded defaults (RabbitMQ on 127.0.0.1:5672, the sample area's policy, the
# admin listener on 127.0.0.1:8081), starting RabbitMQ and PostgreSQL first when they are down.
# Extra arguments go to `concordat run` (e.g. `scripts/run.sh --config deploy/local/concordat.toml`).
set -euo pipefail
cd "$(dirname "$0")/.."
CONCORDAT_SKIP_POSTGRES=${CONCORDAT_SKIP_POSTGRES:-1} CONCORDAT_SKIP_CHROMIUM=${CONCORDAT_SKIP_CHROMIUM:-1} \
    deploy/local/services.sh
exec cargo run --quiet -p concordat -- run "$@"
