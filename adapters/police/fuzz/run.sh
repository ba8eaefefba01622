#!/usr/bin/env bash
# Fuzzes each parser of the police adapter for N seconds (default 60): `ingest` over arbitrary bytes, seeded
# with the published examples, and `render` over arbitrary canonical events, seeded with the render views.
# Not part of the normal test run; use it before a release or after touching ingest or render.
#
#   adapters/police/fuzz/run.sh [SECONDS]
#
# cargo-fuzz needs nightly compiler features; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them.
# A crash leaves its input under fuzz/artifacts/<target>/ and makes this script exit non-zero.
set -euo pipefail

seconds="${1:-60}"
here="$(cd "$(dirname "$0")" && pwd)"
examples="$here/../../../schemas/examples/police-incident"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

cd "$here"
run() {
    local target="$1"
    shift
    mkdir -p "corpus/$target"
    # The first directory collects new inputs; the others only seed it.
    cargo fuzz run "$target" "corpus/$target" "$@" -- -max_total_time="$seconds" -max_len=16384
}
run ingest "$examples/valid" "$examples/invalid"
run render "$here/seeds/render"
echo "fuzzing found no crash in ${seconds}s per target"
