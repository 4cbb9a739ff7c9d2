"""splitgraph_client: connection setup for the splitgraph extension, and the `sgr` command.

All versioning logic lives in the database (the splitgraph extension's SQL functions); this package only finds
the engine (SG_ENGINE_* variables, or a .sgconfig file) and calls those functions.

    from splitgraph_client import connect
    conn = connect()                      # a psycopg2 connection to the engine
"""
from .config import connect

__all__ = ["connect"]
