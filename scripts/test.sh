#!/usr/bin/env bash
# Runs every test under test/ with node's test runner (TypeScript through tsx).
# Kernel tests need root; they load the real BPF programs.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find test -name '*.test.ts' | sort)
exec node --import tsx --test --test-concurrency=1 --test-timeout=300000 "$@" "${files[@]}"
