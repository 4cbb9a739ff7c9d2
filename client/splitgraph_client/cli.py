"""The `sgr` command. `sgr sql` takes a fast path that imports only the driver (the client must stay thin: a
query through sgr costs little more than through psql); every other subcommand is in commands.py."""
import sys


def _fast_sql(args):
    """sgr sql QUERY [--json]: run one statement and print its rows."""
    from . import engine, output

    json_output = "--json" in args
    rest = [a for a in args if a != "--json"]
    if len(rest) != 1 or rest[0].startswith("-"):
        return None  # let click explain the usage
    try:
        columns, rows = engine.run(rest[0])
    except engine.EngineError as error:
        print(error, file=sys.stderr)
        return 1
    output.show(columns, rows, json_output)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["sql"]:
        code = _fast_sql(argv[1:])
        if code is not None:
            return code
    from .commands import cli

    return cli.main(args=argv, prog_name="sgr", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main())
