"""Helpers for the security tests of issue 8 ("No role escapes its rights").

Attackers are real LOGIN roles made with `create role x login nosuperuser`, each connecting over 127.0.0.1
(which the test cluster trusts). A test that works as an attack on a faulty engine turns its attacker into a
superuser: Roles.cleanup() takes that back after every test, so that no other test runs with it.
"""
import hashlib
import itertools
import json
import os
import shutil
import socket
import struct
import sys
import threading
import zlib
from pathlib import Path

import psycopg2
from psycopg2 import sql as pgsql

from support.queries import sql as run
from support.queries import value as one

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "plpython"))
from splitgraph_pl import hashing  # noqa: E402
from support import driver  # noqa: E402

MOUNT_ROLE = "splitgraph_mount"
_numbers = itertools.count(1)






def attempt(conn, query, *args):
    """Run a query that may fail: None when it succeeded, else the psycopg error."""
    try:
        run(conn, query, *args)
    except psycopg2.Error as error:
        return error
    return None


class Role:
    """A LOGIN role that is not a superuser, with a schema of its own (`<name>_own`) in the test database."""

    def __init__(self, cluster, dbname, name):
        self.cluster, self.dbname, self.name = cluster, dbname, name
        self.schema = f"{name}_own"
        self._conns = []

    def connect(self, **settings):
        """A new autocommit connection as this role; settings are SET on it (e.g. statement_timeout='3s')."""
        conn = driver.connect(self.cluster.dsn(self.dbname, user=self.name), autocommit=True, connect_timeout=10)
        for key, val in settings.items():
            run(conn, "select pg_catalog.set_config(%s, %s, false)", key, str(val))
        self._conns.append(conn)
        return conn

    @property
    def conn(self):
        if not self._conns:
            self.connect()
        return self._conns[0]

    def close(self):
        for c in self._conns:
            c.close()
        self._conns = []


class Roles:
    """Makes attacker and victim roles for one test module, and makes sure none stays a superuser."""

    def __init__(self, cluster, dbname):
        self.cluster, self.dbname = cluster, dbname
        self.made = []

    def admin(self):
        return driver.connect(self.cluster.dsn(self.dbname), autocommit=True)

    def new(self, stem, mount=False, privileges=()):
        """A fresh role `<stem>_<n>` (LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE) owning schema `<name>_own`. With
        mount, it is granted splitgraph_mount when the extension defines that role. privileges: roles to grant
        (e.g. pg_read_server_files)."""
        name = f"{stem}_{next(_numbers)}"
        with self.admin() as a:
            run(a, pgsql.SQL("create role {} login nosuperuser nocreatedb nocreaterole").format(
                pgsql.Identifier(name)))
            run(a, pgsql.SQL("create schema {} authorization {}").format(pgsql.Identifier(f"{name}_own"),
                                                                        pgsql.Identifier(name)))
            for granted in privileges:
                run(a, pgsql.SQL("grant {} to {}").format(pgsql.Identifier(granted), pgsql.Identifier(name)))
            if mount:
                grant_mount(a, name)
            assert one(a, "select rolsuper from pg_catalog.pg_roles where rolname = %s", name) is False
        role = Role(self.cluster, self.dbname, name)
        self.made.append(role)
        return role

    def cleanup(self):
        with self.admin() as a:
            for role in self.made:
                role.close()
                run(a, pgsql.SQL("alter role {} nosuperuser").format(pgsql.Identifier(role.name)))
        self.made = []


def grant_mount(admin, role):
    """Grant the mount privilege to `role` when the extension has one (today it has not: every role mounts)."""
    run(admin, f"""do $$ begin
                     if exists (select from pg_catalog.pg_roles where rolname = '{MOUNT_ROLE}') then
                       grant {MOUNT_ROLE} to "{role}";
                     end if;
                   end $$""")


def is_superuser(admin, role):
    return one(admin, "select rolsuper from pg_catalog.pg_roles where rolname = %s", role)


# ---------------------------------------------------------------------------------------------------------------
# Objects: dumps that load_object accepts (or should refuse), and finding data in stored objects
# ---------------------------------------------------------------------------------------------------------------

def object_id_of(rows, columns):
    """The id of a base fragment: rows as their Postgres text forms ("(1,a)"), columns as [(name, type, is_pk)]."""
    spec = [[i + 1, name, type_, pk] for i, (name, type_, pk) in enumerate(columns)]
    return hashing.object_id(hashing.total(hashing.row_hash(r) for r in rows), hashing.ZERO, spec)


def object_dump(rows, columns, table_schema=None, header=None, **overrides):
    """(object_id, bytes): a dump in dump_object's format of a base fragment holding `rows` (text forms, e.g.
    "(abc)") with `columns` [(name, type, is_pk)], whose id is right for those rows. table_schema replaces the
    header's column list (the id does not change: extra entries such as a collation are not hashed); header
    replaces the whole header; overrides change single header fields."""
    spec = [[i + 1, name, type_, pk] for i, (name, type_, pk) in enumerate(columns)]
    insertion = hashing.total(hashing.row_hash(r) for r in rows)
    oid = hashing.object_id(insertion, hashing.ZERO, spec)
    if header is None:
        header = {"object_id": oid, "format": "FRAG", "namespace": "", "rows_inserted": len(rows),
                  "rows_deleted": 0, "insertion_hash": insertion, "deletion_hash": hashing.ZERO, "index": {},
                  "table_schema": spec if table_schema is None else table_schema,
                  "dump_format": "splitgraph-object/1"}
        header.update(overrides)
    body = "{" + ",".join('"' + (r[:-1] + ",t)").replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for r in rows) + "}"
    return oid, zlib.compress(json.dumps(header).encode() + b"\n" + body.encode())


def stored_objects(admin):
    """Ids of the object tables stored in splitgraph_meta."""
    return [r[0] for r in run(admin, """select c.relname::text from pg_catalog.pg_class c
                                       where c.relnamespace = 'splitgraph_meta'::regnamespace
                                         and c.relkind = 'r' and c.relname ~ '^o[0-9a-f]{62}$'""")]


def objects_containing(admin, needle):
    """Ids of the stored objects one of whose rows contains the text `needle`."""
    found = []
    for oid in stored_objects(admin):
        if one(admin, pgsql.SQL("select count(*) from splitgraph_meta.{} o where pg_catalog.strpos(o::text, %s) > 0")
               .format(pgsql.Identifier(oid)), needle):
            found.append(oid)
    return found


# ---------------------------------------------------------------------------------------------------------------
# Mounts
# ---------------------------------------------------------------------------------------------------------------

def server_name(mountpoint):
    """The foreign server today's built-in handlers make for a mountpoint."""
    return "sg_mount_" + hashlib.sha256(mountpoint.encode("utf-8")).hexdigest()[:20]


def server_file(directory, name, content, mode=0o600):
    """A file the database server (the `postgres` OS user when the tests run as root) can read, others not."""
    path = Path(directory) / name
    path.write_text(content)
    path.chmod(mode)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return str(path)


class PasswordCatcher:
    """A fake PostgreSQL server on 127.0.0.1: it asks every client for a clear-text password, records it, and
    refuses the login. Shows what a connection made by the engine would hand to a server an attacker runs."""

    def __init__(self):
        self.passwords = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            conn.settimeout(5)
            try:
                while True:
                    head = conn.recv(8, socket.MSG_WAITALL)
                    if len(head) < 8:
                        return
                    length, code = struct.unpack("!ii", head)
                    if length > 8:
                        conn.recv(length - 8, socket.MSG_WAITALL)
                    if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                        conn.sendall(b"N")
                        continue
                    break
                conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
                if conn.recv(1, socket.MSG_WAITALL) != b"p":
                    return
                length = struct.unpack("!i", conn.recv(4, socket.MSG_WAITALL))[0]
                self.passwords.append(conn.recv(length - 4, socket.MSG_WAITALL).rstrip(b"\0").decode())
                body = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0"
                conn.sendall(b"E" + struct.pack("!i", len(body) + 4) + body)
            except OSError:
                return
