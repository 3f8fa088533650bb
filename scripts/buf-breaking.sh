#!/usr/bin/env bash
# `buf breaking` of protos/ against the newest earlier commit that changed protos/.
# On the first proto commit there is nothing to compare with, and the check is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-.venv/bin/buf}
base=$(git log --format=%H -n 1 --skip 1 -- protos/ || true)
if [ -z "$base" ]; then
  echo "buf breaking: protos/ has only one commit so far; nothing to compare"
  exit 0
fi
echo "buf breaking: against $base"
"$BUF" breaking --against ".git#ref=$base"
