"""Shared fixtures: throwaway PostgreSQL clusters with the installed extension.

One cluster serves the whole session; each test module gets its own database. Set SG_TEST_KEEP=1 to keep the
cluster's folder after the run (its path is printed).
"""
import os
import pathlib
import socket
import sys
import tempfile

import psycopg2
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from support import driver  # noqa: E402
from support.cluster import Cluster  # noqa: E402
from support.queries import sql, value  # noqa: E402,F401 - the tests import them from here
from support.registry import require_passwords  # noqa: E402
from support.s3 import S3Server  # noqa: E402
from support.security import Roles  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_cluster(name, **settings):
    base = tempfile.mkdtemp(prefix=f"sg-{name}-")
    os.chmod(base, 0o755)
    return Cluster(base, free_port(), settings=settings).start()


@pytest.fixture(scope="session")
def cluster():
    c = new_cluster("test", fsync="off", synchronous_commit="off", full_page_writes="off")
    yield c
    if os.environ.get("SG_TEST_KEEP"):
        print(f"\ncluster kept in {c.dir} (port {c.port})")
        c.stop()
    else:
        c.destroy()


@pytest.fixture(scope="session")
def registry_cluster():
    """The second engine of the session: a registry that the first one pushes to and clones from. Every role but
    postgres logs in to it with a password, as postgres_fdw requires of roles that are not superusers."""
    c = new_cluster("registry", fsync="off", synchronous_commit="off", full_page_writes="off")
    require_passwords(c)
    yield c
    if os.environ.get("SG_TEST_KEEP"):
        print(f"\nregistry cluster kept in {c.dir} (port {c.port})")
        c.stop()
    else:
        c.destroy()


_databases = iter(range(1, 10**6))


@pytest.fixture(scope="module")
def dbname(cluster, request):
    name = f"t{next(_databases)}_" + request.module.__name__.split(".")[-1][:40]
    cluster.create_database(name)
    return name


@pytest.fixture(scope="module")
def registry_db(registry_cluster, request):
    """The module's database on the registry, with the extension."""
    name = f"r{next(_databases)}_" + request.module.__name__.split(".")[-1][:40]
    registry_cluster.create_database(name)
    return name


@pytest.fixture
def conn(cluster, dbname):
    """An autocommit connection to the module's database, as the superuser."""
    with driver.connect(cluster.dsn(dbname), autocommit=True) as c:
        yield c


@pytest.fixture(scope="session")
def s3():
    """An S3-compatible server (moto) on loopback for the whole session: tests make their own buckets."""
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def long_selected(request):
    """Skips a test of a long (randomized) profile unless the run selects it: -m long, or SG_LONG=1."""
    if "long" not in (request.config.getoption("markexpr") or "") and not os.environ.get("SG_LONG"):
        pytest.skip("the long profile runs with -m long or SG_LONG=1")


@pytest.fixture
def roles(cluster, dbname):
    """Real LOGIN roles that are not superusers, made on demand (support.security.Roles), put back after the test
    (an attack that worked on a faulty engine would have made one a superuser)."""
    made = Roles(cluster, dbname)
    yield made
    made.cleanup()


def fails(conn, query, *args, sqlstate=None):
    """Run a query that must fail (with this SQLSTATE, when given); returns the error."""
    with pytest.raises(psycopg2.Error) as info:
        sql(conn, query, *args)
    if sqlstate is not None:
        assert info.value.pgcode == sqlstate, f"{info.value.pgcode}: {info.value}"
    return info.value


def objects_of(conn, repo, image, table):
    """The object ids of a table of an image, in apply order."""
    return value(conn, "select splitgraph.table_info(%s, %s, %s)", repo, image, table)["objects"]
