"""Where the engine is: SG_ENGINE_* environment variables, else a .sgconfig INI file (the working directory's,
then the home directory's, or the one SG_CONFIG_FILE names), else defaults.

    [defaults]
    SG_ENGINE_HOST = localhost
    SG_ENGINE_PORT = 5432
    SG_ENGINE_USER = alice
    SG_ENGINE_PWD = secret
    SG_ENGINE_DB_NAME = splitgraph

    [remote: registry]
    SG_ENGINE_HOST = registry.example.com
    SG_ENGINE_PORT = 5432
    SG_ENGINE_USER = alice
    SG_ENGINE_PWD = secret
    SG_ENGINE_DB_NAME = splitgraph

A [remote: NAME] section is registered on the engine (splitgraph.add_remote) the first time a command needs
remote NAME and the engine does not know it yet.
"""
import configparser
import os
import pathlib

SETTINGS = {"host": "SG_ENGINE_HOST", "port": "SG_ENGINE_PORT", "user": "SG_ENGINE_USER",
            "password": "SG_ENGINE_PWD", "dbname": "SG_ENGINE_DB_NAME"}
DEFAULTS = {"host": "localhost", "port": "5432", "user": "postgres", "dbname": "splitgraph"}
REMOTE_PREFIX = "remote:"


def config_file():
    """The .sgconfig in use, or None."""
    named = os.environ.get("SG_CONFIG_FILE")
    if named:
        return pathlib.Path(named)
    for folder in (pathlib.Path.cwd(), pathlib.Path.home()):
        candidate = folder / ".sgconfig"
        if candidate.is_file():
            return candidate
    return None


def _parser():
    path = config_file()
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys as written: SG_ENGINE_HOST
    if path is not None:
        parser.read(path, encoding="utf-8")
    return parser


def _section(values):
    return {key: values[variable] for key, variable in SETTINGS.items() if values.get(variable)}


def engine_settings():
    """Connection settings of the engine: defaults, then .sgconfig's [defaults], then the environment."""
    parser = _parser()
    settings = dict(DEFAULTS)
    if parser.has_section("defaults"):
        settings.update(_section(parser["defaults"]))
    settings.update(_section(os.environ))
    return settings


def remotes():
    """{name: settings} of the [remote: NAME] sections of .sgconfig."""
    parser = _parser()
    found = {}
    for section in parser.sections():
        if section.replace(" ", "").startswith(REMOTE_PREFIX):
            name = section.split(":", 1)[1].strip()
            found[name] = {**DEFAULTS, **_section(parser[section])}
    return found


def connect(**overrides):
    """A psycopg2 connection to the engine (autocommit: every splitgraph call is one transaction of its own)."""
    import psycopg2

    settings = {**engine_settings(), **overrides}
    conn = psycopg2.connect(**settings)
    conn.autocommit = True
    return conn
