#!/usr/bin/env python3
"""Throwaway PostgreSQL 15 clusters for the engine, the demo, the tests and the benchmark.

A cluster lives in its own folder, listens on 127.0.0.1 at its own port (no Unix socket) and trusts local
connections. When run as root, the server runs as the `postgres` user, as initdb requires.

    cluster.py start --dir .engine --port 5488 --db splitgraph   # init if needed, start, create db + extension
    cluster.py stop --dir .engine
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import time

PG_BIN = pathlib.Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_server_user(cmd):
    """initdb and pg_ctl refuse to run as root: run them as `postgres` then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


def _give_to_server_user(path):
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


class Cluster:
    def __init__(self, directory, port, settings=None):
        self.dir = pathlib.Path(directory).resolve()
        self.data = self.dir / "data"
        self.port = int(port)
        self.settings = dict(settings or {})

    def dsn(self, dbname="postgres", user="postgres"):
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"

    def init(self):
        if (self.data / "PG_VERSION").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        _give_to_server_user(self.dir)
        subprocess.run(_as_server_user([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "shared_buffers": "'256MB'",
            "max_connections": "50",
            "logging_collector": "off",
        }
        conf.update(self.settings)
        with open(self.data / "postgresql.auto.conf", "a") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")

    def running(self):
        return subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    def start(self):
        self.init()
        if not self.running():
            log = self.dir / "server.log"
            if not log.exists():
                log.touch()
                _give_to_server_user(log)
            subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(log),
                                            "-w", "-t", "60", "start"]), check=True, stdout=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"cluster on port {self.port} did not become ready; see {self.dir / 'server.log'}")

    def stop(self):
        if self.data.exists() and self.running():
            subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                                            "stop"]), check=True, stdout=subprocess.DEVNULL)

    def stop_immediately(self):
        """Kill the server (pg_ctl stop -m immediate): no shutdown checkpoint, transactions in flight are lost and
        the next start recovers."""
        subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                                        "stop"]), check=True, stdout=subprocess.DEVNULL)

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def psql(self, sql, dbname="postgres", user="postgres", check=True):
        out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
                              self.dsn(dbname, user), "-c", sql], capture_output=True, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return out.stdout.strip()

    def create_database(self, dbname, extension=True):
        exists = self.psql(f"select 1 from pg_database where datname = '{dbname}'")
        if not exists:
            self.psql(f'create database "{dbname}"')
        if extension:
            # updatecheck: create the previous version, then upgrade it in place to the one under test.
            previous = os.environ.get("SG_TEST_UPDATE_FROM")
            if previous:
                self.psql(f"create extension if not exists splitgraph version '{previous}' cascade", dbname=dbname)
                self.psql("alter extension splitgraph update", dbname=dbname)
            else:
                self.psql("create extension if not exists splitgraph cascade", dbname=dbname)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "destroy"])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=5488)
    parser.add_argument("--db", default=None, help="database to create with the extension")
    args = parser.parse_args()
    cluster = Cluster(args.dir, args.port)
    if args.action == "start":
        cluster.start()
        if args.db:
            cluster.create_database(args.db)
        print(f"engine: {cluster.dsn(args.db or 'postgres')}")
    elif args.action == "stop":
        cluster.stop()
    else:
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
