#!/bin/sh
# Re-copy the shared conformance vectors into tests/conformance/vectors.
#
# Usage (from anywhere):  tests/conformance/sync_vectors.sh [SOURCE_DIR]
# SOURCE_DIR is taken relative to the repository root; it defaults to
# ../shared/conformance/vectors. The copy is exact: files that no longer exist in
# SOURCE_DIR are removed, so the local directory mirrors the source.
set -eu

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo_root"

src=${1:-../shared/conformance/vectors}
dest=tests/conformance/vectors

if [ ! -d "$src" ]; then
    echo "sync_vectors: source directory not found: $src (relative to $repo_root)" >&2
    exit 1
fi
set -- "$src"/*.json
if [ ! -e "$1" ]; then
    echo "sync_vectors: no *.json files in $src" >&2
    exit 1
fi

mkdir -p "$dest"
rm -f "$dest"/*.json
for f in "$@"; do
    cp "$f" "$dest/"
done
chmod u+w "$dest"/*.json
echo "sync_vectors: copied $# file(s) from $src to $dest"
