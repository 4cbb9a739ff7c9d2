"""What sgr prints: aligned tables for people, JSON for scripts."""
import datetime
import decimal
import json


def _plain(value):
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


def as_json(columns, rows):
    """Rows as a JSON list of objects (a single value as itself)."""
    records = [{c: _plain(v) for c, v in zip(columns, row, strict=False)} for row in rows]
    return json.dumps(records, indent=2, default=str, ensure_ascii=False)


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return str(_plain(value))


def as_table(columns, rows):
    """Rows as an aligned text table with a header line."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)).rstrip() for r in cells]
    return "\n".join(lines)


def show(columns, rows, json_output=False):
    """Print a result: nothing for a call that returns nothing, a value alone, or a table."""
    if not columns:
        return
    if json_output:
        if len(columns) == 1 and len(rows) == 1 and isinstance(rows[0][0], (dict, list)):
            print(json.dumps(rows[0][0], indent=2, default=str, ensure_ascii=False))
        else:
            print(as_json(columns, rows))
        return
    if len(columns) == 1 and len(rows) == 1:
        value = rows[0][0]
        if value is None or value == "":
            return
        if isinstance(value, (dict, list)):
            print(json.dumps(value, indent=2, default=str, ensure_ascii=False))
        else:
            print(_cell(value))
        return
    print(as_table(columns, rows))
