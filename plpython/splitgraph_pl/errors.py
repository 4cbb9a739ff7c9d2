"""Errors raised to SQL callers: each with a SQLSTATE and a message that says what to do next."""

INVALID_NAME = "42602"
UNDEFINED_OBJECT = "42704"
UNDEFINED_TABLE = "42P01"
DUPLICATE_OBJECT = "42710"
OBJECT_NOT_IN_PREREQUISITE_STATE = "55000"
CARDINALITY_VIOLATION = "21000"
INVALID_PARAMETER_VALUE = "22023"
FEATURE_NOT_SUPPORTED = "0A000"
INSUFFICIENT_PRIVILEGE = "42501"
DATA_CORRUPTED = "XX001"
PROGRAM_LIMIT_EXCEEDED = "54000"


def fail(plpy, sqlstate, message, hint=None, detail=None):
    """Abort the call (and its transaction) with a SQL error."""
    kwargs = {"sqlstate": sqlstate}
    if hint:
        kwargs["hint"] = hint
    if detail:
        kwargs["detail"] = detail
    plpy.error(message, **kwargs)
