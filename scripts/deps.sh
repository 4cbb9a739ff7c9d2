#!/usr/bin/env bash
# Install what building, running and testing the extension needs, from Debian's packages and PyPI.
# Idempotent: installs only what is missing. Run as root (or with sudo available).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

debs=(postgresql-15 postgresql-contrib postgresql-server-dev-15 postgresql-plpython3-15
      postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl postgresql-15-mysql-fdw mariadb-server
      python3-pip python3-venv make)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start services (tests start their own servers); there is no init system here.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  # The stock Debian cluster is not used (tests and the engine create their own).
  $sudo mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
  if ! $sudo apt-get install -y --no-install-recommends "${missing[@]}"; then
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "${missing[@]}"
  fi
  $sudo rm -f /usr/sbin/policy-rc.d
fi

# The client-side tools (pytest, psycopg2, linters) live in a virtual environment of the project.
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || /usr/bin/python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha"
want=$(sha256sum "$here/requirements-dev.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-dev.txt"
  echo "$want" > "$stamp"
fi
# The client (sgr and splitgraph_client.connect), as the README's set-up installs it.
client_stamp="$venv/.client.sha"
client_want=$(cat "$here/client/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$client_stamp" 2>/dev/null)" != "$client_want" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here/client"
  echo "$client_want" > "$client_stamp"
fi
