"""Every pgTAP file under tests/pgtap runs through pg_prove against the session's cluster."""
import pathlib
import subprocess

import pytest

PGTAP = sorted((pathlib.Path(__file__).parent / "pgtap").glob("*.sql"))


@pytest.fixture(scope="module")
def tap_db(cluster):
    cluster.create_database("pgtap")
    cluster.psql("create extension if not exists pgtap", dbname="pgtap")
    return "pgtap"


@pytest.mark.parametrize("path", PGTAP, ids=[p.name for p in PGTAP])
def test_pgtap(cluster, tap_db, path):
    out = subprocess.run(["pg_prove", "--verbose", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
                          "-d", tap_db, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
