#!/usr/bin/env bash
# Fuzzes the NHS adapter's FHIR ingest for N seconds (default 60), seeded with the adapter's own fixtures
# (valid and invalid Bundles and resources). Not part of the normal test run; use it before a release or after
# touching ingest. Usage: adapters/nhs-fhir/fuzz/run.sh [SECONDS]
#
# cargo-fuzz needs nightly compiler features; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them.
# A crash leaves its input under fuzz/artifacts/ingest/ and makes this script exit non-zero.
set -euo pipefail

seconds="${1:-60}"
here="$(cd "$(dirname "$0")" && pwd)"
fixtures="$here/../tests/fixtures"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

cd "$here"
mkdir -p corpus/ingest
# The first directory collects new inputs; the others only seed it. FHIR messages are larger than the police
# and VCS payloads, so inputs may reach 64 KiB.
cargo fuzz run ingest corpus/ingest "$fixtures/valid" "$fixtures/invalid" -- \
    -max_total_time="$seconds" -max_len=65536
echo "fuzzing found no crash in ${seconds}s"
