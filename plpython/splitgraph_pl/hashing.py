"""Content hashes of rows and fragments, and object ids (compatible with Splitgraph's scheme).

A row's hash is sha256 of the UTF-8 bytes of its Postgres text form (as pgcrypto's digest(row::text) takes them;
a text-to-bytea cast would unescape backslashes). A digest is 32 bytes read as 16 big-endian unsigned 16-bit
lanes; digests add and subtract lane by lane modulo 2**16, so a set of rows hashes the same in any order and
fragments' hashes compose: the sum of a table's fragments' content hashes is the hash of its rows.
"""
import hashlib
import math

LANES = 16
ZERO = "0" * 64


def lane_sums_sql(digest, name):
    """SQL aggregates summing the 16 big-endian 16-bit lanes of the digests `digest` (an expression), as columns
    name0 .. name15 (reduced modulo 2**16 by to_hex). A lane's sum is 256 times the sum of its high bytes plus the
    sum of its low bytes: summing the 32 bytes apart costs fewer operations a row than assembling each lane first."""
    return ", ".join(f"sum(pg_catalog.get_byte({digest}, {2 * i})) * 256 + "
                     f"sum(pg_catalog.get_byte({digest}, {2 * i + 1})) as {name}{i}" for i in range(LANES))


# lane_sums sums at most this many digests: each lane's sum must fit the 32 bits it is given
MAX_SUMMED = 65537


def lane_sums(digests):
    """The 16 lane sums (modulo 2**16) of the digests concatenated in `digests` (bytes: 32 per digest, at most
    MAX_SUMMED of them), as lane_sums_sql would sum them, in a few operations on whole numbers instead of one per
    byte: each 16-bit lane is given a 32-bit slot (so a digest becomes a 512-bit record), the records are read as
    one number and added up (in chunks, then by folding halves), and no slot overflows into the next."""
    count = len(digests) // 32
    slots = bytearray(2 * len(digests))
    slots[2::4] = digests[0::2]  # each lane's high byte, then its low byte, at the bottom of its slot
    slots[3::4] = digests[1::2]
    chunk = 64 * max(1, math.isqrt(count))
    total = sum(int.from_bytes(slots[i:i + chunk], "big") for i in range(0, len(slots), chunk))
    records = min(count, chunk // 64)
    while records > 1:
        half = records // 2
        total = (total >> (512 * half)) + (total & ((1 << (512 * half)) - 1))
        records -= half
    raw = total.to_bytes(64, "big")
    return [int.from_bytes(raw[4 * i:4 * i + 4], "big") & 0xFFFF for i in range(LANES)]


def lanes_of(hex_digest):
    raw = bytes.fromhex(hex_digest)
    return [int.from_bytes(raw[2 * i:2 * i + 2], "big") for i in range(LANES)]


def to_hex(lanes):
    return "".join(f"{lane & 0xFFFF:04x}" for lane in lanes)


def add(a_hex, b_hex):
    return to_hex(x + y for x, y in zip(lanes_of(a_hex), lanes_of(b_hex), strict=True))


def sub(a_hex, b_hex):
    return to_hex(x - y for x, y in zip(lanes_of(a_hex), lanes_of(b_hex), strict=True))


def total(hexes):
    acc = ZERO
    for h in hexes:
        acc = add(acc, h)
    return acc


def row_hash(row_text):
    """sha256 of one row's text form, for tests and tools (the engine hashes in SQL)."""
    return hashlib.sha256(row_text.encode("utf-8")).hexdigest()


def schema_hash(columns):
    """sha256 of Python's repr of [(ordinal, name, type, is_pk), ...] — the text Splitgraph hashes."""
    spec = [(int(c[0]), c[1], c[2], bool(c[3])) for c in columns]
    return hashlib.sha256(repr(spec).encode("utf-8")).hexdigest()


def content_hash(insertion_hash, deletion_hash):
    return sub(insertion_hash, deletion_hash)


def object_id(insertion_hash, deletion_hash, columns):
    content = content_hash(insertion_hash, deletion_hash)
    return "o" + hashlib.sha256((content + schema_hash(columns)).encode("ascii")).hexdigest()[:62]


def sha(text):
    """sha256 of text (UTF-8), in hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def combine(parts):
    """sha256 of the concatenated texts (hex strings, for a Splitfile step's image hash: DESIGN.md)."""
    return sha("".join(parts))
