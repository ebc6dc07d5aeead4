"""Keeps docs/protocol.md true to the code.

- Every ```hexdump block is decoded with the reference codec and its body with msgspec;
  the header table and body table that follow it must state exactly what is in the bytes,
  and the body must validate against the op's body Struct.
- Every Op, Flag, ErrorCode and CloseCode appears in a table row with its number, and no
  row pairs a known name with a wrong number.
- The frame-header table matches HEADER_FORMAT; every body Struct of core_ext/bodies.py
  has a field table whose keys, types, defaults and bounds match the Struct.
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import msgspec
import pytest

from edgeim.core_ext import bodies
from edgeim.core_ext.codec_py import decode_frame
from edgeim.core_ext.protocol import (
    HEADER_FORMAT,
    HEADER_SIZE,
    MAX_BODY_SIZE,
    MAX_FRAME_SIZE,
    RESPONSE_BIT,
    SUBPROTOCOL_PREFIX,
    VERSION,
    CloseCode,
    ErrorCode,
    Flag,
    Op,
)

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
LINES = DOC.splitlines()

#: Body Struct of every op, as the doc's op table states it: derived from the one op table.
OP_BODIES: dict[Op, type[msgspec.Struct]] = {
    **{Op(op): request for op, (request, _) in bodies.OPS.items()},
    **{Op(op | RESPONSE_BIT): reply for op, (_, reply) in bodies.OPS.items()},
    **bodies.PUSHES,
    Op.ERROR: bodies.Error,
}

#: The example frames the doc must show (by op).
REQUIRED_EXAMPLES = {Op.LOGIN, Op.LOGIN_OK, Op.SEND, Op.SEND_ACK, Op.MSG_PUSH, Op.ERROR}

HEADER_FIELDS = ("version", "op", "flags", "req_id", "target", "body_len")


# -- markdown helpers ---------------------------------------------------------------------------

def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_separator(line: str) -> bool:
    return bool(re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()))


def _tables(lines: list[str]) -> list[tuple[int, list[str], list[list[str]]]]:
    """Markdown tables in ``lines``: (index of the header line, header cells, rows)."""
    found = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and _is_separator(lines[i + 1]):
            start = i
            header = _cells(lines[i])
            i += 2
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            found.append((start, header, rows))
        else:
            i += 1
    return found


def _table_rows() -> list[list[str]]:
    return [row for _, _, rows in _tables(LINES) for row in rows]


def _byte_range(cell: str) -> tuple[int, int]:
    """``"21–29"`` or ``"20"`` -> inclusive (start, end)."""
    m = re.fullmatch(r"(\d+)(?:\s*[–-]\s*(\d+))?", cell)
    assert m, f"not a byte range: {cell!r}"
    start = int(m.group(1))
    return start, int(m.group(2) or start)


def _code(cell: str) -> str | None:
    m = re.fullmatch(r"`([^`]*)`", cell)
    return m.group(1) if m else None


# -- hex dumps --------------------------------------------------------------------------------

class Example:
    def __init__(self, title: str, frame: bytes, header_rows: list[list[str]], body_rows: list[list[str]]):
        self.title = title
        self.frame = frame
        self.header_rows = header_rows
        self.body_rows = body_rows

    def __repr__(self) -> str:
        return self.title


def _parse_dump(block: str, where: str) -> bytes:
    """Rows of ``OFFSET  xx xx ... xx  |ascii|``: 16 bytes each, the last one possibly fewer."""
    out = bytearray()
    lines = block.strip("\n").splitlines()
    for n, line in enumerate(lines):
        hex_part = line.split("|", 1)[0].split()
        assert hex_part, f"{where}: empty dump line"
        offset, octets = int(hex_part[0], 16), hex_part[1:]
        assert offset == len(out), f"{where}: row offset {hex_part[0]} but {len(out)} bytes so far"
        assert 1 <= len(octets) <= 16, f"{where}: {len(octets)} bytes in one row"
        assert len(octets) == 16 or n == len(lines) - 1, f"{where}: short row before the last"
        out += bytes(int(o, 16) for o in octets)
    return bytes(out)


def _examples() -> list[Example]:
    examples = []
    fence = re.compile(r"^```hexdump\n(.*?)^```$", re.S | re.M)
    for m in fence.finditer(DOC):
        before = DOC[: m.start()]
        headings = re.findall(r"^#{2,4} (.+)$", before, re.M)
        title = headings[-1] if headings else f"dump at {m.start()}"
        frame = _parse_dump(m.group(1), title)
        after = DOC[m.end():]
        nxt = re.search(r"^#{1,3} |^```hexdump", after, re.M)
        section = after[: nxt.start() if nxt else len(after)].splitlines()
        header_rows = body_rows = None
        for _, header, rows in _tables(section):
            if header[:2] == ["Bytes", "Field"]:
                header_rows = rows
            elif header[:2] == ["Key bytes", "Key"]:
                body_rows = rows
        assert header_rows is not None, f"{title}: no header table (| Bytes | Field | ...) after the dump"
        assert body_rows is not None, f"{title}: no body table (| Key bytes | Key | ...) after the dump"
        examples.append(Example(title, frame, header_rows, body_rows))
    return examples


EXAMPLES = _examples()


def test_doc_has_the_required_examples() -> None:
    ops = {ex.frame[1] for ex in EXAMPLES}
    missing = {op.name for op in REQUIRED_EXAMPLES if op not in ops}
    assert not missing, f"no hexdump example for {sorted(missing)}"


@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda ex: ex.title)
def test_hexdump_header(ex: Example) -> None:
    op, flags, req_id, target, body = decode_frame(ex.frame)
    values = dict(zip(HEADER_FIELDS, struct.unpack_from(HEADER_FORMAT, ex.frame)))
    assert values["version"] == VERSION
    assert (values["op"], values["flags"], values["req_id"], values["target"]) == (op, flags, req_id, target)
    assert values["body_len"] == len(body) == len(ex.frame) - HEADER_SIZE

    stated: dict[str, int] = {}
    covered = 0
    for row in ex.header_rows:
        rng, field, raw, value = row[:4]
        start, end = _byte_range(rng)
        assert start == covered, f"{field}: starts at {start}, expected {covered}"
        covered = end + 1
        raw_bytes = bytes.fromhex((_code(raw) or "").replace(" ", ""))
        assert raw_bytes == ex.frame[start:end + 1], f"{field}: raw column {raw} != frame bytes"
        if field == "op":
            m = re.fullmatch(r"0x([0-9A-Fa-f]{2}) (\w+)", value)
            assert m, f"op value {value!r} is not '0xNN NAME'"
            assert Op[m.group(2)] == int(m.group(1), 16)
            stated[field] = int(m.group(1), 16)
        else:
            stated[field] = int(value, 0)
    assert covered == HEADER_SIZE
    assert stated == values


@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda ex: ex.title)
def test_hexdump_body(ex: Example) -> None:
    op, _flags, _req_id, _target, body = decode_frame(ex.frame)
    raw_body = bytes(body)
    decoded = msgspec.msgpack.decode(raw_body)
    assert isinstance(decoded, dict)

    # the body validates against the op's Struct, and re-encodes to the same bytes
    kind = OP_BODIES[Op(op)]
    typed = bodies.decode(raw_body, kind)
    assert bodies.encode(typed) == raw_body

    map_row, *entry_rows = ex.body_rows
    assert map_row[1] == "(map header)"
    m = re.match(r"`([0-9a-f]{2})` fixmap, (\d+) entries", map_row[3])
    if m:
        assert _byte_range(map_row[0]) == (HEADER_SIZE, HEADER_SIZE)
        assert int(m.group(1), 16) == ex.frame[HEADER_SIZE] == 0x80 | len(decoded)
        pos = HEADER_SIZE + 1
    else:  # map16: a Struct of more than fifteen fields (msgspec sizes the header by its fields)
        m = re.match(r"`de ([0-9a-f]{2}) ([0-9a-f]{2})` map16, (\d+) entries", map_row[3])
        assert m, f"map header row: {map_row[3]!r}"
        assert _byte_range(map_row[0]) == (HEADER_SIZE, HEADER_SIZE + 2)
        assert ex.frame[HEADER_SIZE:HEADER_SIZE + 3] == bytes([0xDE, 0, len(decoded)])
        pos = HEADER_SIZE + 3
    assert int(m.groups()[-1]) == len(decoded)

    stated: dict[str, Any] = {}
    for key_rng, key_cell, val_rng, encoding, value_cell in entry_rows:
        key = _code(key_cell)
        assert key is not None, f"key cell {key_cell!r} not in backquotes"
        value = json.loads(_code(value_cell) or "")
        ks, ke = _byte_range(key_rng)
        vs, ve = _byte_range(val_rng)
        assert ks == pos and vs == ke + 1, f"{key}: ranges {key_rng}, {val_rng} not contiguous from {pos}"
        assert ex.frame[ks:ke + 1] == msgspec.msgpack.encode(key), f"{key}: key bytes"
        value_bytes = ex.frame[vs:ve + 1]
        assert value_bytes == msgspec.msgpack.encode(value), f"{key}: value bytes {value_bytes.hex(' ')}"
        shown = bytes.fromhex((re.match(r"`([0-9a-f ]+)`", encoding) or pytest.fail(encoding)).group(1).replace(" ", ""))
        assert value_bytes.startswith(shown), f"{key}: encoding column {encoding!r}"
        stated[key] = value
        pos = ve + 1
    assert pos == len(ex.frame), "body table does not cover the whole body"
    assert stated == decoded
    assert list(stated) == list(decoded), "body table key order differs from the bytes"


# -- numbers and names ------------------------------------------------------------------------

def _row_has(row: list[str], *codes: str) -> bool:
    present = {_code(c) for c in row}
    return all(code in present for code in codes)


@pytest.mark.parametrize("member", list(Op), ids=lambda m: m.name)
def test_every_op_in_doc(member: Op) -> None:
    assert any(_row_has(row, member.name, f"0x{member.value:02X}") for row in _table_rows()), (
        f"no table row with `{member.name}` and `0x{member.value:02X}`"
    )


@pytest.mark.parametrize("member", list(ErrorCode) + list(CloseCode), ids=lambda m: f"{type(m).__name__}.{m.name}")
def test_every_error_and_close_code_in_doc(member: ErrorCode | CloseCode) -> None:
    assert any(_row_has(row, str(member.value), member.name) for row in _table_rows()), (
        f"no table row with `{member.value}` and `{member.name}`"
    )


@pytest.mark.parametrize("member", [f for f in Flag if f.value], ids=lambda m: m.name)
def test_every_flag_in_doc(member: Flag) -> None:
    assert any(_row_has(row, f"0x{member.value:04x}", member.name) for row in _table_rows())


def test_no_row_pairs_a_name_with_a_wrong_number() -> None:
    for row in _table_rows():
        if len(row) < 2:
            continue
        first, second = _code(row[0]), _code(row[1])
        if first is None or second is None:
            continue
        if first in Op.__members__ and re.fullmatch(r"0x[0-9A-Fa-f]+", second):
            assert int(second, 16) == Op[first], row
        if re.fullmatch(r"\d+", first):
            for enum in (ErrorCode, CloseCode):
                if second in enum.__members__:
                    assert int(first) == enum[second], row


def test_op_table_bodies() -> None:
    assert set(OP_BODIES) == set(Op), "OP_BODIES must name the body of every Op"
    (op_table,) = [rows for _, header, rows in _tables(LINES) if header[:2] == ["Op", "Hex"]]
    seen = set()
    for row in op_table:
        op = Op[_code(row[0]) or ""]
        body_cell = row[4]
        kind = OP_BODIES[op]
        if kind is bodies.Empty:
            assert body_cell == "empty", row
        else:
            assert body_cell.startswith(f"`{kind.__name__}`"), row
        seen.add(op)
    assert seen == set(Op)


def test_constants_in_doc() -> None:
    assert f"`{SUBPROTOCOL_PREFIX}{VERSION}`" in DOC
    assert "`ws://HOST:PORT/ws`" in DOC
    assert f"`{HEADER_FORMAT}`" in DOC
    for number in (MAX_FRAME_SIZE, MAX_BODY_SIZE, bodies.MAX_CONTENT):
        assert str(number) in DOC
    assert f"1..{bodies.MAX_PAGE}" in DOC


def test_header_layout_table() -> None:
    (table,) = [rows for _, header, rows in _tables(LINES) if header[:4] == ["Offset", "Size", "Type", "Field"]]
    codes = HEADER_FORMAT[1:]
    layout = {}
    for i, name in enumerate(HEADER_FIELDS):
        offset = struct.calcsize("<" + codes[:i])
        layout[name] = (offset, struct.calcsize("<" + codes[i]))
    stated = {}
    for row in table:
        name = _code(row[3])
        if name in layout:
            stated[name] = (int(row[0]), int(row[1]))
        else:
            assert name is None and row[0] == str(HEADER_SIZE), row  # the body row
    assert stated == layout


# -- body field tables ------------------------------------------------------------------------

BODY_STRUCTS = {
    name: obj
    for name in bodies.__all__
    if isinstance(obj := getattr(bodies, name), type) and issubclass(obj, msgspec.Struct) and msgspec.structs.fields(obj)
}


def _type_name(t: msgspec.inspect.Type) -> str:
    if isinstance(t, msgspec.inspect.UnionType):
        kinds = [k for k in t.types if not isinstance(k, msgspec.inspect.NoneType)]
        if len(kinds) == len(t.types):  # no nil: e.g. a content, "str or map"
            return " or ".join(_type_name(k) for k in kinds)
        assert len(kinds) == 1 and len(t.types) == 2, t
        return f"{_type_name(kinds[0])} or nil"
    if isinstance(t, msgspec.inspect.DictType):
        return "map"
    if isinstance(t, msgspec.inspect.ListType) and isinstance(t.item_type, msgspec.inspect.IntType):
        return "[int]"
    if isinstance(t, msgspec.inspect.StrType) or (
            isinstance(t, msgspec.inspect.LiteralType) and all(isinstance(v, str) for v in t.values)):
        return "str"
    if isinstance(t, msgspec.inspect.BoolType):
        return "bool"
    if isinstance(t, msgspec.inspect.IntType):
        return "int"
    if isinstance(t, msgspec.inspect.ListType) and isinstance(t.item_type, msgspec.inspect.StructType):
        return f"[{t.item_type.cls.__name__}]"
    if isinstance(t, msgspec.inspect.StructType):  # a body nested in another (PinInfo.message)
        return t.cls.__name__
    raise AssertionError(f"no doc spelling for {t!r}")


def _bounds(t: msgspec.inspect.Type) -> str:
    parts = []
    if isinstance(t, msgspec.inspect.UnionType):  # the bounds of its one bounded kind
        kinds = [k for k in t.types if not isinstance(k, (msgspec.inspect.NoneType, msgspec.inspect.DictType))]
        (t,) = kinds
    if isinstance(t, msgspec.inspect.ListType):
        lo, hi = t.min_length, t.max_length
        if lo is not None and hi is not None:
            parts.append(f"len {lo}..{hi}")
        elif hi is not None:
            parts.append(f"len ≤ {hi}")
        if isinstance(t.item_type, msgspec.inspect.IntType) and t.item_type.ge is not None:
            parts.append(f"items {_bounds(t.item_type)}")
    elif isinstance(t, msgspec.inspect.LiteralType):
        parts.append("one of " + ", ".join(f"`{v}`" for v in t.values))
    elif isinstance(t, msgspec.inspect.StrType):
        lo, hi = t.min_length, t.max_length
        if lo is not None and hi is not None:
            parts.append(f"len {lo}..{hi}")
        elif hi is not None:
            parts.append(f"len ≤ {hi}")
        elif lo is not None:
            parts.append(f"len ≥ {lo}")
        if t.pattern is not None:
            parts.append(f"`{t.pattern}`")
    elif isinstance(t, msgspec.inspect.IntType):
        assert t.gt is None and t.lt is None and t.multiple_of is None, t
        if t.ge is not None and t.le is not None:
            parts.append(f"{t.ge}..{t.le}")
        elif t.ge is not None:
            parts.append(f"≥ {t.ge}")
        elif t.le is not None:
            parts.append(f"≤ {t.le}")
    return ", ".join(parts) or "—"


def _field_tables() -> dict[str, list[list[list[str]]]]:
    """Struct name -> the field tables documenting it (named by the last backquoted Struct
    name in the paragraph just above the table)."""
    found: dict[str, list[list[list[str]]]] = {}
    for start, header, rows in _tables(LINES):
        if header != ["Key", "Type", "Default", "Bounds", "Meaning"]:
            continue
        i = start - 1
        while i >= 0 and not LINES[i].strip():
            i -= 1
        para = []
        while i >= 0 and LINES[i].strip():
            para.insert(0, LINES[i])
            i -= 1
        names = [n for n in re.findall(r"`(\w+)`", " ".join(para)) if n in BODY_STRUCTS]
        assert names, f"field table at line {start + 1} does not name its Struct"
        found.setdefault(names[-1], []).append(rows)
    return found


FIELD_TABLES = _field_tables()


@pytest.mark.parametrize("name", sorted(BODY_STRUCTS))
def test_body_field_table(name: str) -> None:
    kind = BODY_STRUCTS[name]
    assert name in FIELD_TABLES, f"no field table for `{name}`"
    info = msgspec.inspect.type_info(kind)
    expected = []
    for field in info.fields:
        if field.required:
            default = "required"
        elif field.default_factory is not msgspec.NODEFAULT:
            default = f"`{json.dumps(field.default_factory())}`"
        else:
            default = f"`{json.dumps(field.default)}`"
        expected.append([f"`{field.encode_name}`", _type_name(field.type), default, _bounds(field.type)])
    for rows in FIELD_TABLES[name]:
        assert [row[:4] for row in rows] == expected
        assert all(row[4] for row in rows), "every field needs a meaning"
