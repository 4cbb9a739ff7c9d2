"""splitgraph's server-side logic, imported by the extension's PL/Python functions.

Every function takes `plpy` as its first argument; no module imports plpy, so the pure parts test without a server.
"""
