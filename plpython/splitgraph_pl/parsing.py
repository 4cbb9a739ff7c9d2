"""pglast (PostgreSQL's own parser, as a Python package), loaded so that it can run inside the server.

pglast's extension module carries a copy of PostgreSQL's parser (libpg_query), whose functions have the names of
the server's own (raw_parser, palloc, MemoryContext...). Loaded as Python loads extensions, the module's calls bind
to the server's functions, and the backend crashes (signal 11, checked on 15). Loaded with RTLD_DEEPBIND, the
module binds to its own copies first. Import pglast from here, never directly.
"""
import os
import sys

_flags = sys.getdlopenflags()
sys.setdlopenflags(os.RTLD_NOW | os.RTLD_DEEPBIND)
try:
    import pglast.parser  # noqa: F401 - loads the extension module with the flags above
finally:
    sys.setdlopenflags(_flags)

import pglast  # noqa: E402
from pglast import ast  # noqa: E402
from pglast.enums import SetOperation  # noqa: E402
from pglast.stream import RawStream  # noqa: E402

__all__ = ["ParseError", "RawStream", "SetOperation", "ast", "parse_sql"]
ParseError = pglast.parser.ParseError
parse_sql = pglast.parse_sql
