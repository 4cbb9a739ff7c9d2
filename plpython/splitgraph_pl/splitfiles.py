"""The Splitfile language: what a Splitfile says, read into commands (and written back, for provenance).

    # comments; a backslash at the end of a line continues it; ${NAME} is a parameter (\\${NAME} stays as is)
    FROM EMPTY [AS repo]                        a stage that starts from the empty image
    FROM repo[:ref] [AS repo]                   a stage based on that image
    FROM repo[:ref] IMPORT ALL | item, ...      import tables (item: table [AS alias] or {SELECT ...} AS alias)
    FROM MOUNT handler [user:password@host:port] 'options json' IMPORT item, ...
    SQL statement | SQL {statements}            a block may span lines; \\} is a } inside it
    NAME args...                                a registered custom command (arguments split as a shell does)

Keywords are upper case, as in Splitgraph. Parameters are substituted first, in the whole text; continuations
join lines outside {} blocks. Errors (SplitfileError) name the line and column of the original text and what
was expected there. This module needs no server: it is pure Python, so tests can fuzz it directly.
"""
import dataclasses
import json
import re
import shlex

from . import names

SYNTAX_ERROR = "42601"
MISSING_PARAMETER = "22023"
FEATURE_NOT_SUPPORTED = "0A000"

_PARAMETER_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
COMMAND_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_REPOSITORY_TOKEN = re.compile(r"[A-Za-z0-9_/-]+")
TABLE_NAME = re.compile(r"[A-Za-z0-9_]+")
_HANDLER = re.compile(r"[A-Za-z0-9_]+")
_BLANK = " \t\r\f\v"
KEYWORDS = ("FROM", "SQL")


class SplitfileError(Exception):
    """A Splitfile that cannot be read: where (1-based line and column of the text as given) and why."""

    def __init__(self, message, line, column, hint=None, code=SYNTAX_ERROR, parameter=None, source_line=""):
        super().__init__(message)
        self.message, self.line, self.column, self.hint, self.code = message, line, column, hint, code
        self.parameter, self.source_line = parameter, source_line

    def text(self):
        where = f"Splitfile line {self.line}, column {self.column}"
        inside = f" (in the value of parameter {self.parameter})" if self.parameter else ""
        return f"{where}{inside}: {self.message}"

    def detail(self):
        if not self.source_line.strip():
            return None
        line = self.source_line.expandtabs(1)
        return f"{line}\n{' ' * (self.column - 1)}^"


@dataclasses.dataclass
class Image:
    repository: str
    ref: str  # None: the repository's HEAD, else its newest image
    position: int

    def text(self):
        return self.repository + (f":{self.ref}" if self.ref is not None else "")


@dataclasses.dataclass
class Text:
    """A piece of the Splitfile (a SQL statement, a query, an argument): its value and, for each character, its
    offset in the substituted text (for errors inside it)."""
    value: str
    offsets: list

    def position(self, index):
        if not self.offsets:
            return 0
        return self.offsets[max(0, min(index, len(self.offsets) - 1))]


@dataclasses.dataclass
class Item:
    """A table (name) or a query ({...}: query is its Text) to import, under a name (alias)."""
    table: str
    query: Text
    alias: str
    position: int


@dataclasses.dataclass
class Mount:
    handler: str
    options: dict  # the options object, with the connection's username, password, host and port merged in
    position: int


@dataclasses.dataclass
class Command:
    """One command. kind: "FROM" (image None: EMPTY; output: AS repo or None), "IMPORT" (source: an Image or a
    Mount; items, or None for ALL), "SQL" (sql: a Text) or "CUSTOM" (name, args)."""
    kind: str
    position: int
    line: int
    image: Image = None
    output: str = None
    source: object = None
    items: list = None
    sql: Text = None
    name: str = None
    args: list = None

    def label(self):
        return f"line {self.line} ({self.kind if self.kind != 'CUSTOM' else self.name})"


@dataclasses.dataclass
class Stage:
    """The commands that build one output repository, starting from its base: base None is the empty image
    (FROM EMPTY, or no FROM at all), else the FROM command."""
    output: str
    base: Command
    commands: list


@dataclasses.dataclass
class Splitfile:
    stages: list
    source: str
    locate: object  # offset in the substituted text -> SplitfileError arguments (line, column, parameter, line text)

    def error(self, message, position, hint=None, code=SYNTAX_ERROR):
        line, column, parameter, text = self.locate(position)
        return SplitfileError(message, line, column, hint, code, parameter, text)

    def commands(self):
        return [c for s in self.stages for c in ([s.base] if s.base is not None else []) + s.commands]


def _line_and_column(source, offset):
    start = source.rfind("\n", 0, offset) + 1
    end = source.find("\n", offset)
    return source.count("\n", 0, offset) + 1, offset - start + 1, source[start:end if end >= 0 else len(source)]


def substitute(source, params):
    """The text with each ${NAME} replaced by params[NAME] and each \\${ by ${; and, for each character of the
    result (and one past its end), (offset in the source, parameter it came from or None). Every parameter
    the text names and params lacks is named in one error."""
    out, origin, missing = [], [], []
    i, n = 0, len(source)
    while i < n:
        if source.startswith("\\${", i):
            out.append("${")
            origin += [(i + 1, None), (i + 2, None)]
            i += 3
        elif source.startswith("${", i):
            match = _PARAMETER_REFERENCE.match(source, i)
            if match is None:
                line, column, text = _line_and_column(source, i)
                raise SplitfileError("expected a parameter name (letters, digits and _) and } after ${", line, column,
                                     hint="write \\${ for a literal ${", source_line=text)
            name = match.group(1)
            if name in params:
                value = params[name]
                out.append(value)
                origin += [(i, name)] * len(value)
            elif name not in [m for m, _ in missing]:
                missing.append((name, i))
            i = match.end()
        else:
            out.append(source[i])
            origin.append((i, None))
            i += 1
    origin.append((n, None))
    if missing:
        line, column, text = _line_and_column(source, missing[0][1])
        listed = ", ".join(m for m, _ in missing)
        raise SplitfileError(f"no value for parameter{'s' if len(missing) > 1 else ''} {listed}", line, column,
                             hint="pass every parameter in params, e.g. '{\"" + missing[0][0] + "\": \"...\"}'",
                             code=MISSING_PARAMETER, source_line=text)
    return "".join(out), origin


class _Reader:
    """A recursive-descent reader over the substituted text; pos is an offset into it."""

    def __init__(self, text, fail):
        self.text, self.fail, self.pos = text, fail, 0

    # -- characters -------------------------------------------------------------------------------------------
    def peek(self, k=0):
        i = self.pos + k
        return self.text[i] if i < len(self.text) else ""

    def at_end(self):
        return self.pos >= len(self.text)

    def _continuation(self):
        """Length of a backslash-newline at pos (0 when there is none)."""
        if self.text.startswith("\\\n", self.pos):
            return 2
        if self.text.startswith("\\\r\n", self.pos):
            return 3
        return 0

    def blank(self):
        """Skip spaces, tabs and continuations; whether anything was skipped."""
        start = self.pos
        while not self.at_end():
            if self.peek() in _BLANK:
                self.pos += 1
            elif self._continuation():
                self.pos += self._continuation()
            else:
                break
        return self.pos > start

    def require_blank(self, after, expected=None):
        if not self.blank():
            following = "the end of the line" if self.at_end() or self.peek() in "\n#" else repr(self.peek())
            self.fail(f"expected {expected or 'a space'} after {after}, not {following}", self.pos)

    def skip_comment(self):
        if self.peek() == "#":
            end = self.text.find("\n", self.pos)
            self.pos = len(self.text) if end < 0 else end

    def end_of_command(self):
        self.blank()
        self.skip_comment()
        if self.at_end():
            return
        if self.peek() != "\n":
            self.fail(f"unexpected {self.peek()!r}: expected the end of the line", self.pos)
        self.pos += 1

    # -- tokens -----------------------------------------------------------------------------------------------
    def peek_word(self):
        match = _WORD.match(self.text, self.pos)
        return match.group(0) if match else None

    def keyword(self, word):
        """Consume the keyword `word` (upper case, a whole word) if it is next."""
        if self.peek_word() == word:
            self.pos += len(word)
            return True
        return False

    def token(self, pattern, what):
        match = pattern.match(self.text, self.pos)
        if match is None:
            self.fail(f"expected {what}", self.pos)
        self.pos = match.end()
        return match.group(0)

    def repository(self):
        start = self.pos
        name = self.token(_REPOSITORY_TOKEN, "a repository name (namespace/name or name)")
        if not names.is_repository(name):
            self.fail(f"invalid repository name {name!r}", start,
                      hint="namespace/name or name: letters, digits, - and _, at most 64 characters each part")
        return name

    def image(self):
        start = self.pos
        repository = self.repository()
        ref = None
        if self.peek() == ":":
            self.pos += 1
            ref = self.token(names.IMAGE_REF, "a tag, branch or image hash after :")
        following = self.peek()
        if following and following not in _BLANK + "\n#" and not self._continuation():
            self.fail(f"unexpected {following!r} in an image reference (repository[:tag_or_hash])", self.pos)
        return Image(repository, ref, start)

    def table_name(self, what):
        if self.peek() == '"':
            start = self.pos
            self.pos += 1
            out = []
            while True:
                if self.at_end() or self.peek() == "\n":
                    self.fail('unterminated quoted name: expected "', start)
                if self.peek() == '"':
                    if self.peek(1) == '"':
                        out.append('"')
                        self.pos += 2
                        continue
                    self.pos += 1
                    break
                out.append(self.peek())
                self.pos += 1
            if not out:
                self.fail("a quoted name must not be empty", start)
            return "".join(out)
        return self.token(TABLE_NAME, what)

    def quoted(self, what):
        """A single-quoted string ('' is a quote), on one line."""
        start = self.pos
        if self.peek() != "'":
            self.fail(f"expected {what} in single quotes", self.pos)
        self.pos += 1
        out = []
        while True:
            if self.at_end() or self.peek() == "\n":
                self.fail("unterminated string: expected '", start)
            if self.peek() == "'":
                if self.peek(1) == "'":
                    out.append("'")
                    self.pos += 2
                    continue
                self.pos += 1
                return "".join(out)
            out.append(self.peek())
            self.pos += 1

    def block(self):
        """A {...} block: everything up to the first } not escaped as \\}; it may span lines."""
        start = self.pos
        self.pos += 1
        chars, offsets = [], []
        while True:
            if self.at_end():
                self.fail("unterminated { block: expected }", start, hint="a } inside a block is written \\}")
            if self.text.startswith("\\}", self.pos):
                chars.append("}")
                offsets.append(self.pos + 1)
                self.pos += 2
                continue
            if self.peek() == "}":
                self.pos += 1
                return Text("".join(chars), offsets)
            chars.append(self.peek())
            offsets.append(self.pos)
            self.pos += 1

    def rest_of_line(self):
        """The rest of the line, continuations joined."""
        chars, offsets = [], []
        while not self.at_end() and self.peek() != "\n":
            skip = self._continuation()
            if skip:
                self.pos += skip
                continue
            chars.append(self.peek())
            offsets.append(self.pos)
            self.pos += 1
        return Text("".join(chars), offsets)

    # -- commands ---------------------------------------------------------------------------------------------
    def commands(self, line_of):
        found = []
        while True:
            while True:
                self.blank()
                self.skip_comment()
                if self.peek() != "\n":
                    break
                self.pos += 1
            if self.at_end():
                return found
            found.append(self.command(line_of))
            self.end_of_command()

    def command(self, line_of):
        start = self.pos
        word = self.peek_word()
        if word is None:
            self.fail(f"unexpected {self.peek()!r}: expected a command (FROM, SQL or a custom command's name)", start)
        self.pos += len(word)
        line = line_of(start)
        if word == "FROM":
            return self.from_command(start, line)
        if word == "SQL":
            return self.sql_command(start, line)
        args = Text("", [])
        if self.blank():
            args = self.rest_of_line()
        try:
            split = shlex.split(args.value, comments=True)
        except ValueError as error:
            self.fail(f"cannot split the arguments of {word}: {error}", start)
        return Command("CUSTOM", start, line, name=word, args=split)

    def from_command(self, start, line):
        self.require_blank("FROM", "EMPTY, MOUNT or repository[:tag]")
        if self.keyword("EMPTY"):
            output = None
            if self.blank():
                if self.keyword("AS"):
                    self.require_blank("AS")
                    output = self.repository()
                elif self.peek_word() == "IMPORT":
                    self.fail("FROM EMPTY has nothing to import", self.pos, hint="FROM repository[:tag] IMPORT ...")
            return Command("FROM", start, line, output=output)
        if self.keyword("MOUNT"):
            self.require_blank("MOUNT")
            mount = self.mount()
            self.require_blank("the mount options")
            if not self.keyword("IMPORT"):
                self.fail("expected IMPORT after the mount options", self.pos)
            self.require_blank("IMPORT")
            return Command("IMPORT", start, line, source=mount, items=self.items())
        image = self.image()
        if self.blank():
            if self.keyword("AS"):
                self.require_blank("AS")
                return Command("FROM", start, line, image=image, output=self.repository())
            if self.keyword("IMPORT"):
                self.require_blank("IMPORT")
                return Command("IMPORT", start, line, source=image, items=self.items())
        return Command("FROM", start, line, image=image)

    def mount(self):
        start = self.pos
        handler = self.token(_HANDLER, "a mount handler's name")
        self.require_blank("the handler's name")
        connection = {}
        if self.peek() != "'":
            at = self.pos
            text = self.token(re.compile(r"\S+"), "a connection (user:password@host:port) or the options")
            credentials, sign, address = text.rpartition("@")
            user, colon, password = credentials.partition(":")
            host, colon2, port = address.rpartition(":")
            if not sign or not colon or not colon2 or not user or not host or not re.fullmatch("[0-9]{1,5}", port):
                self.fail("expected a connection as user:password@host:port", at)
            connection = {"username": user, "password": password, "host": host, "port": int(port)}
            self.require_blank("the connection")
        at = self.pos
        text = self.quoted("the mount options (a JSON object)")
        try:
            options = json.loads(text)
        except (ValueError, RecursionError) as error:
            self.fail(f"the mount options are not JSON: {error}", at)
        if not isinstance(options, dict):
            self.fail("the mount options must be a JSON object", at)
        options.update(connection)
        return Mount(handler, options, start)

    def items(self):
        if self.keyword("ALL"):
            return None
        items, aliases = [], set()
        while True:
            at = self.pos
            if self.peek() == "{":
                query, table = self.block(), None
                if not query.value.strip():
                    self.fail("the query in {} is empty", at)
            else:
                query, table = None, self.table_name("a table name or a {query} to import")
            alias = table
            save = self.pos
            if self.blank() and self.keyword("AS"):
                self.require_blank("AS")
                alias = self.table_name("a table name after AS")
                save = self.pos
            self.pos = save
            if alias is None:
                self.fail("a query needs a name: {SELECT ...} AS name", at)
            if alias in aliases:
                self.fail(f'table "{alias}" is imported twice', at, hint="give each a name of its own with AS")
            aliases.add(alias)
            items.append(Item(table, query, alias, at))
            self.blank()
            if self.peek() != ",":
                self.pos = save
                return items
            self.pos += 1
            self.blank()

    def sql_command(self, start, line):
        self.require_blank("SQL", "a statement or a {block}")
        if self.peek_word() == "FILE":
            self.fail("SQL FILE is read by the client, which inlines the file before the call", start,
                      hint="put the statements in the Splitfile: SQL {...}", code=FEATURE_NOT_SUPPORTED)
        if self.peek() == "{":
            sql = self.block()
        else:
            sql = self.rest_of_line()
        if not sql.value.strip():
            self.fail("expected a SQL statement", start)
        return Command("SQL", start, line, sql=sql)


def parse(source, params=None, output=None):
    """Read a Splitfile (text) with its parameters (a dict of strings) into a Splitfile of stages; output is the
    repository of the first stage unless that says AS. Raises SplitfileError."""
    text, origin = substitute(source, params or {})

    def locate(position):
        offset, parameter = origin[max(0, min(position, len(origin) - 1))]
        line, column, line_text = _line_and_column(source, offset)
        return line, column, parameter, line_text

    def fail(message, position, hint=None, code=SYNTAX_ERROR):
        line, column, parameter, line_text = locate(position)
        raise SplitfileError(message, line, column, hint, code, parameter, line_text)

    reader = _Reader(text, fail)
    commands = reader.commands(lambda position: locate(position)[0])
    if not commands:
        fail("the Splitfile has no command", len(text), hint="start with FROM, SQL or a custom command")
    stages = []
    for command in commands:
        if command.kind == "FROM":
            repository = command.output or (stages[-1].output if stages else output)
            stages.append(Stage(repository, command if command.image is not None else None, []))
        else:
            if not stages:
                stages.append(Stage(output, None, []))
            stages[-1].commands.append(command)
    if stages[0].output is None:
        fail("no output repository: name one (output_repository) or say FROM ... AS repository", 0)
    return Splitfile(stages, source, locate)


# ---------------------------------------------------------------------------------------------------------------
# Writing Splitfiles back (reconstruct_splitfile)
# ---------------------------------------------------------------------------------------------------------------

def escape(text):
    """Text to put in a {} block or an argument: } and ${ escaped so that it reads back as itself."""
    return text.replace("${", "\\${").replace("}", "\\}")


def table_text(name):
    if TABLE_NAME.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def argument_text(arg):
    return shlex.quote(arg).replace("${", "\\${")


def import_line(source, tables, aliases):
    """FROM source IMPORT ...: tables are {"table": name} or {"query": text}."""
    items = []
    for table, alias in zip(tables, aliases, strict=True):
        if "query" in table:
            items.append("{" + escape(table["query"]) + "} AS " + table_text(alias))
        elif table["table"] == alias:
            items.append(table_text(alias))
        else:
            items.append(f"{table_text(table['table'])} AS {table_text(alias)}")
    return f"FROM {source} IMPORT " + ", ".join(items)


def sql_line(sql):
    return "SQL {" + escape(sql) + "}"


def custom_line(name, args):
    return " ".join([name] + [argument_text(a) for a in args])
