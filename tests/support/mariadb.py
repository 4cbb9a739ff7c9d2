"""A throwaway MariaDB server for the mount tests (Debian's mariadb-server; nothing system-wide is touched).

    server = MariaDB(directory).start()      # install a datadir, start mariadbd on a free port, wait for it
    server.create_database("sales", user="sg", password="s3cret")
    server.sql("insert into ...", database="sales")
    server.stop()

The server listens on 127.0.0.1 at a free port and on a Unix socket inside `directory`; root logs in over that
socket without a password (the socket is reachable only by root and the server user); the users it creates log in
over TCP with a password. When the tests run as root the server runs as the `mysql` user, as mariadbd requires.
Every step has a timeout; a failure raises MariaDBError with the command's output and the end of the server log.
"""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
CLIENT = shutil.which("mariadb") or "/usr/bin/mariadb"
SERVER_USER = "mysql"


class MariaDBError(RuntimeError):
    pass


def available():
    """Whether the binaries this module needs are installed (scripts/deps.sh installs them)."""
    return all(os.path.exists(p) for p in (INSTALL_DB, MARIADBD, CLIENT))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quote_string(text):
    """A MariaDB string literal (with NO_BACKSLASH_ESCAPES off, the default)."""
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(name):
    return "`" + str(name).replace("`", "``") + "`"


class MariaDB:
    def __init__(self, directory, port=None):
        self.dir = pathlib.Path(directory).resolve()
        self.data = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"
        self.pid_file = self.dir / "mysqld.pid"
        self.log = self.dir / "server.log"
        self.port = int(port or _free_port())
        self.process = None

    # -----------------------------------------------------------------------------------------------------------
    # life cycle
    # -----------------------------------------------------------------------------------------------------------

    def _as_root(self):
        return os.geteuid() == 0

    def _chown(self, path):
        if self._as_root():
            shutil.chown(path, SERVER_USER, SERVER_USER)

    def log_tail(self, chars=4000):
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def _fail(self, message, output=""):
        raise MariaDBError(f"{message}\n--- output ---\n{output.strip()}\n--- {self.log} ---\n{self.log_tail()}")

    def install(self, timeout=120):
        if (self.data / "mysql").is_dir():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.data.mkdir(exist_ok=True)
        self._chown(self.dir)
        self._chown(self.data)
        cmd = [INSTALL_DB, "--no-defaults", f"--datadir={self.data}", "--auth-root-authentication-method=normal",
               "--skip-test-db", "--skip-name-resolve"]
        if self._as_root():
            cmd.append(f"--user={SERVER_USER}")
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self._fail(f"mariadb-install-db did not finish in {timeout} s", str(e.stdout or "") + str(e.stderr or ""))
        if out.returncode != 0:
            self._fail(f"mariadb-install-db failed (exit {out.returncode})", out.stdout + out.stderr)

    def start(self, timeout=60):
        if not available():
            raise MariaDBError("MariaDB is not installed (Debian's mariadb-server; see scripts/deps.sh)")
        self.install()
        if not self.log.exists():
            self.log.touch()
            self._chown(self.log)
        cmd = [MARIADBD, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
               f"--socket={self.socket}", f"--pid-file={self.pid_file}", "--bind-address=127.0.0.1",
               "--skip-log-bin", "--skip-name-resolve", f"--log-error={self.log}", "--innodb-buffer-pool-size=32M",
               "--innodb-log-file-size=16M", "--max-connections=50",
               "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci"]
        if self._as_root():
            cmd.append(f"--user={SERVER_USER}")
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._fail(f"mariadbd exited with {self.process.returncode} while starting")
            out = self._client(["-e", "select 1"], check=False, timeout=10)
            if out.returncode == 0:
                return self
            last = out.stderr
            time.sleep(0.2)
        self.stop()
        self._fail(f"mariadbd did not accept connections within {timeout} s", last)

    def stop(self, timeout=30):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()

    # -----------------------------------------------------------------------------------------------------------
    # statements
    # -----------------------------------------------------------------------------------------------------------

    def _client(self, args, check=True, timeout=30, stdin=None):
        cmd = [CLIENT, "--no-defaults", "--protocol=socket", f"--socket={self.socket}", "--user=root",
               "--batch", "--skip-column-names", "--connect-timeout=5"] + args
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
        except subprocess.TimeoutExpired as e:
            self._fail(f"the mariadb client timed out after {timeout} s: {args}", str(e.stderr or ""))
        if check and out.returncode != 0:
            self._fail(f"the mariadb client failed: {args}", out.stdout + out.stderr)
        return out

    def sql(self, statements, database=None):
        """Run statements as root; the rows of the last one, as lists of strings (NULL as None)."""
        args = [f"--database={database}"] if database else []
        out = self._client(args, stdin=statements)
        return [[None if v == "NULL" else v for v in line.split("\t")] for line in out.stdout.splitlines()]

    def create_database(self, database, user, password):
        """A database and a user that may use it, logging in with a password over TCP from 127.0.0.1."""
        self.sql(f"""
            create database if not exists {quote_ident(database)} character set utf8mb4;
            create user if not exists {quote_string(user)}@'127.0.0.1' identified by {quote_string(password)};
            create user if not exists {quote_string(user)}@'localhost' identified by {quote_string(password)};
            grant all privileges on {quote_ident(database)}.* to {quote_string(user)}@'127.0.0.1';
            grant all privileges on {quote_ident(database)}.* to {quote_string(user)}@'localhost';
            flush privileges;
        """)

    def check_login(self, database, user, password):
        """The user logs in over TCP with the password (proves the setup the tests rely on)."""
        cmd = [CLIENT, "--no-defaults", "--protocol=tcp", "--host=127.0.0.1", f"--port={self.port}", f"--user={user}",
               f"--database={database}", "--batch", "--skip-column-names", "--connect-timeout=5", "-e", "select 1"]
        env = dict(os.environ, MYSQL_PWD=password)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
        if out.returncode != 0 or out.stdout.strip() != "1":
            self._fail(f"user {user} cannot log in over TCP", out.stdout + out.stderr)


class running:
    """`with running("sales", "sg", "pw") as server:` a started server with that database and user; stopped and
    removed afterwards (the folder is kept, and its path printed, when SG_TEST_KEEP is set)."""

    def __init__(self, database, user, password, prefix="sg-mariadb-"):
        import tempfile
        self.server = MariaDB(tempfile.mkdtemp(prefix=prefix))
        self.database, self.user, self.password = database, user, password

    def __enter__(self):
        try:
            self.server.start()
            self.server.create_database(self.database, self.user, self.password)
            self.server.check_login(self.database, self.user, self.password)
        except BaseException:
            self.server.destroy()
            raise
        return self.server

    def __exit__(self, *exc):
        if os.environ.get("SG_TEST_KEEP"):
            print(f"\nMariaDB kept in {self.server.dir} (port {self.server.port})")
            self.server.stop()
        else:
            self.server.destroy()
