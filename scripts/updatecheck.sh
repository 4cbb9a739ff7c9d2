#!/usr/bin/env bash
# updatecheck: install the previous released version, ALTER EXTENSION UPDATE to this one, run the whole suite.
# The previous version is the A of the newest committed hop script extension/splitgraph--A--<this version>.sql;
# its install script and Python package are built from the git tag vA.
set -euo pipefail
version=$1
here=$(cd "$(dirname "$0")/.." && pwd)
hop=$(ls "$here"/extension/splitgraph--*--"$version".sql 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$hop" ]; then
  echo "updatecheck: $version is the first version (no extension/splitgraph--*--$version.sql); nothing to upgrade from"
  exit 0
fi
previous=$(basename "$hop" | sed -E "s/^splitgraph--(.*)--$version\.sql$/\1/")
work=$(mktemp -d)
trap 'git -C "$here" worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$here" worktree add --detach "$work/old" "v$previous" >/dev/null
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
# Install the old version beside this one (its own script and Python directory), then test the upgrade path.
$sudo make -C "$work/old" install >/dev/null
$sudo make -C "$here" install >/dev/null
SG_TEST_UPDATE_FROM="$previous" "$here/.venv/bin/python" -m pytest -p no:cacheprovider "$here/tests"
