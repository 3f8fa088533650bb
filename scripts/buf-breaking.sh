#!/usr/bin/env bash
# `buf breaking` of protos/ against the newest earlier commit that changed protos/.
# The old protos are checked out into a temporary workspace together with today's build/protodeps (the
# googleapis files that are copied from the venv, not committed). On the first proto
# commit there is nothing to compare with, and the check says so.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-$PWD/.venv/bin/buf}
base=$(git log --format=%H -n 1 --skip 1 -- protos/ 2>/dev/null || true)
if [ -z "$base" ]; then
  echo "buf breaking: protos/ has only one commit so far; nothing to compare"
  exit 0
fi
old=$(mktemp -d)
trap 'rm -rf "$old"' EXIT
git archive "$base" protos buf.yaml | tar -x -C "$old"
mkdir -p "$old/build" && cp -r build/protodeps "$old/build/"
echo "buf breaking: against $base"
"$BUF" breaking --against "$old"
