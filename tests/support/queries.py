"""Running a query on a test connection: the primitives that conftest and the support modules share."""


def sql(conn, query, *args):
    """Run a query, return all rows (or None for statements without results)."""
    with conn.cursor() as cur:
        cur.execute(query, args or None)
        return cur.fetchall() if cur.description else None


def value(conn, query, *args):
    """The first column of the first row (None when there is no row)."""
    rows = sql(conn, query, *args)
    return rows[0][0] if rows else None
