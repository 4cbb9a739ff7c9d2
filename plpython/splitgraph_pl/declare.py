"""Declarations of the SQL functions the extension is made of, written beside the Python that implements them.

    @api("commit(repository text, comment text default null) returns text",
         "commit(repository, comment): a new image from the checkout; returns its hash")
    def commit(plpy, repository, comment=None): ...

The build (scripts/build_sql.py) reads these decorators from the source, without importing it, and writes the
SQL: for an `api` function, the public function splitgraph.<name> (a PL/pgSQL door that pins the settings a
row's text depends on, checks required arguments and raises errors cleanly) and its PL/Python body in
splitgraph_internal; for a `helper`, one PL/Python function in splitgraph_internal. At run time the decorators
do nothing. Arguments of a decorator must be literals: the build reads them as written.

api(signature, doc, volatility="volatile", security="definer", rows=None, nullable=(), settings={})
    signature   "name(argument type [default value], ...) returns type": the SQL signature; the Python
                parameters after plpy must carry the same names, in the same order.
    doc         the one-line reference comment (COMMENT ON FUNCTION), starting with "name(".
    volatility  "volatile" or "stable".
    security    "definer" (runs with the extension owner's rights; checks the caller's itself) or "invoker"
                (runs as the caller; reaches the extension's tables only through helpers).
    rows        "temp": the Python function returns the name of a temporary table holding the result rows,
                which the door returns and drops (rows never pass through Python).
    nullable    arguments that may be null although they have no default (or a non-null default); every
                other argument without a null default is checked (22004 names it).
    settings    {name: value} the door sets beside the pinned ones (e.g. log_min_error_statement: panic, so that
                the text of a failed call, which may hold a secret, stays out of the server log).

helper(signature, doc, volatility="volatile", security="definer", public=False)
    A function in splitgraph_internal for the extension's own SQL (mount handlers, triggers) or for invoker
    code to reach the extension's tables. public=True grants EXECUTE to PUBLIC: SECURITY.md must say why it is
    safe on its own.

At run time each PL/Python function of the extension calls its implementation through `call`, which keeps the
Python traceback of an internal error (an exception that is neither a deliberate error nor an SQL error) in the
error's detail, where the client sees it.
"""
import traceback


def _declaration(*_args, **_options):
    def declare(function):
        return function

    return declare


api = _declaration
helper = _declaration


def call(plpy, function, *args):
    """function(plpy, *args); an exception other than plpy's own becomes an internal error (XX000) whose detail
    is its Python traceback."""
    try:
        return function(plpy, *args)
    except (plpy.Error, plpy.SPIError):
        raise
    except Exception as error:  # noqa: BLE001 - every other exception is a bug, reported with its traceback
        plpy.error(f"{type(error).__name__}: {error}", detail=traceback.format_exc().rstrip(), sqlstate="XX000")
