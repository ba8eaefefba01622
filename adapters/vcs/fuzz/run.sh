#!/usr/bin/env bash
# Fuzzes every parser of the VCS adapter for N seconds each (default 60): ingest_json, ingest_csv, render.
# Not part of the normal test run. Usage: adapters/vcs/fuzz/run.sh [SECONDS]
#
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# Seeds come from the published examples; a crash leaves its input under fuzz/artifacts/<target>/ and fails.
set -euo pipefail

seconds="${1:-60}"
here="$(cd "$(dirname "$0")" && pwd)"
examples="$here/../../../schemas/examples/vcs-contact"
snapshots="$here/../tests/fixtures/render"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

seed() { # target, files...
    local target="$1"; shift
    mkdir -p "$work/$target"
    cp "$@" "$work/$target/" 2>/dev/null || true
}
seed ingest_json "$examples"/valid/*.json "$examples"/invalid/*.json
seed ingest_csv "$examples"/valid/*.csv "$examples"/invalid/*.csv
# The render target reads canonical events; extract the views from the render fixtures.
mkdir -p "$work/render"
for fixture in "$snapshots"/*.json; do
    python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["view"]))' "$fixture" \
        > "$work/render/$(basename "$fixture")" 2>/dev/null || true
done

cd "$here"
for target in ingest_json ingest_csv render; do
    echo "fuzzing $target for ${seconds}s"
    cargo fuzz run "$target" "$work/$target" -- -max_total_time="$seconds" -max_len=8192
done
