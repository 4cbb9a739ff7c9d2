"""Fixtures of the tests of issue 11 (see support/remotes.py): a test module loads them with
`pytest_plugins = ["support.remote_fixtures"]`."""
import os

import pytest

from support.remotes import Users, connect, start_registry


@pytest.fixture(scope="module")
def registry():
    """The registry cluster of this module."""
    c = start_registry()
    yield c
    if os.environ.get("SG_TEST_KEEP"):
        print(f"\nregistry kept in {c.dir} (port {c.port})")
        c.stop()
    else:
        c.destroy()


@pytest.fixture(scope="module")
def regdb(registry):
    """The registry's database, with the extension."""
    registry.create_database("registry")
    return "registry"


@pytest.fixture
def reg(registry, regdb):
    """A connection to the registry's database as postgres (its administrator)."""
    with connect(registry.dsn(regdb)) as c:
        yield c


@pytest.fixture(scope="module")
def users(cluster, dbname, registry, regdb):
    """Makes Users on demand for the module; none stays a superuser afterwards (on either engine)."""
    made = Users(cluster, dbname, registry, regdb)
    yield made
    made.cleanup()
