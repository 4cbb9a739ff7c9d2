#!/usr/bin/env bash
# Run the demo against an engine: scripts/demo.sh "<libpq connection string>"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
psql -X -d "$1" -f "$here/demo.sql"
