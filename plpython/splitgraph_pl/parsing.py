"""pglast (PostgreSQL's own parser, as a Python package), loaded so that it can run inside the server.

pglast's extension module carries a copy of PostgreSQL's parser (libpg_query), whose functions have the names of
the server's own (raw_parser, palloc, MemoryContext...). Loaded as Python loads extensions, the module's calls bind
to the server's functions, and the backend crashes (signal 11, checked on 15). Loaded with RTLD_DEEPBIND, the
module binds to its own copies first. Import pglast from here, never directly.
"""
import os
import sys

from . import errors

# Code that loaded pglast before, without the flag (a role's own `import pglast` in PL/Python), left it bound to
# the server's functions: then it must not be used in this process (usable is False).
usable = "pglast.parser" not in sys.modules
_flags = sys.getdlopenflags()
sys.setdlopenflags(os.RTLD_NOW | os.RTLD_DEEPBIND)
try:
    import pglast.parser  # noqa: F401 - loads the extension module with the flags above
finally:
    sys.setdlopenflags(_flags)
if usable:
    pglast.parser.splitgraph_deepbind = True
else:
    usable = getattr(sys.modules["pglast.parser"], "splitgraph_deepbind", False)

import pglast  # noqa: E402
from pglast import ast  # noqa: E402
from pglast.enums import SetOperation  # noqa: E402
from pglast.stream import RawStream  # noqa: E402

__all__ = ["ParseError", "RawStream", "SetOperation", "ast", "parse_sql", "require"]
ParseError = pglast.parser.ParseError
parse_sql = pglast.parse_sql


def require(plpy):
    """An error (55000) unless the parser can run in this process."""
    if not usable:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "this session loaded pglast without RTLD_DEEPBIND, so its parser cannot be used in this process",
                    hint="do it in a new session (in PL/Python, import pglast only through splitgraph)")
