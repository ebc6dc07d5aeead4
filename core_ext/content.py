"""Typed message content: the content types of protocol v1 and their schemas.

A message's ``type`` says what its ``content`` is. Text (1) is a string; every other
type is a MessagePack map whose schema is below (keys not in the schema are kept as they
are, for newer clients). Types 100..255 are the application's own: any map, passed
through unchecked. Type 8 (a call record) is written by the server only. Anything else
is a ``BAD_BODY``.

Stores keep a content as text: the string itself for text, the map as JSON otherwise
(``stored`` and ``wire`` convert), so a store needs no schema of its own. A map is
accepted only if that JSON gives it back equal, value for value (``check``): maps keyed by
strings, arrays, strings, integers, finite floats, booleans and nil. What JSON cannot hold
(NaN and infinities, keys that are not strings, binary, extension types and timestamps)
is refused, never silently rewritten: the protocol relays a content unchanged.

A content is bounded in bytes twice: as JSON (what a store keeps) and as MessagePack (what
a push and a page carry), so that every stored message fits one frame with its other
keys.
"""
from __future__ import annotations

import datetime
import math
from typing import Annotated, Any

import msgspec

__all__ = [
    "TEXT", "IMAGE", "FILE", "VOICE", "VIDEO", "LOCATION", "CONTACT", "CALL", "CUSTOM_MIN",
    "SCHEMAS", "SEARCHED_TYPES", "check", "stored", "wire", "searchable", "MAX_CONTENT", "SHORT_TEXT",
]

MAX_CONTENT = 32 * 1024  # bytes of a content: UTF-8 text, or the map as JSON and as MessagePack
#: a text of at most this many characters fits MAX_CONTENT in UTF-8, whatever they are
SHORT_TEXT = MAX_CONTENT // 4

TEXT, IMAGE, FILE, VOICE, VIDEO, LOCATION, CONTACT, CALL = 1, 2, 3, 4, 5, 6, 7, 8
CUSTOM_MIN = 100  # 100..255: application-defined
#: the types whose content a message search can match (``searchable``)
SEARCHED_TYPES = frozenset({TEXT, FILE, LOCATION})

FileKey = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
Mime = Annotated[str, msgspec.Meta(min_length=3, max_length=128, pattern=r"^[\w.+-]+/[\w.+-]+\Z")]
Size = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Pixels = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Label = Annotated[str, msgspec.Meta(max_length=256)]


class Image(msgspec.Struct):
    key: FileKey
    width: Pixels
    height: Pixels
    size: Size
    mime: Mime
    thumb_key: FileKey | None = None


class File(msgspec.Struct):
    key: FileKey
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    size: Size
    mime: Mime


class Voice(msgspec.Struct):
    key: FileKey
    duration_ms: Millis
    size: Size
    mime: Mime


class Video(msgspec.Struct):
    key: FileKey
    duration_ms: Millis
    width: Pixels
    height: Pixels
    size: Size
    mime: Mime
    cover_key: FileKey | None = None


class Location(msgspec.Struct):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    name: Label = ""
    address: Label = ""


class Contact(msgspec.Struct):
    user: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
    name: Label = ""


class Call(msgspec.Struct):
    call: str
    kind: str  # "audio" | "video"
    caller: int
    callee: int
    status: str  # "answered" | "missed" | "rejected" | "cancelled" | "busy"
    duration_ms: int = 0


#: content type -> schema of its map (TEXT is a string; CUSTOM_MIN.. is any map)
SCHEMAS: dict[int, type[msgspec.Struct]] = {
    IMAGE: Image, FILE: File, VOICE: Voice, VIDEO: Video, LOCATION: Location, CONTACT: Contact, CALL: Call,
}
_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


def check(type_: int, content: str | dict[str, Any], *, by_server: bool = False) -> None:
    """Raise ValueError (a BAD_BODY when decoding a request) unless ``content`` matches
    ``type_``'s schema and fits ``MAX_CONTENT``."""
    if type_ == TEXT:
        if not isinstance(content, str):
            raise ValueError("a text message's content is a string")
        if len(content) > SHORT_TEXT and len(content.encode()) > MAX_CONTENT:
            raise ValueError(f"content is over {MAX_CONTENT} bytes in UTF-8")
        return
    if not isinstance(content, dict):
        raise ValueError(f"a type {type_} message's content is a map")
    if type_ == CALL and not by_server:
        raise ValueError("call records are written by the server")
    schema = SCHEMAS.get(type_)
    if schema is None and type_ < CUSTOM_MIN:
        raise ValueError(f"unknown content type {type_} (application types are {CUSTOM_MIN}..255)")
    if schema is not None:
        try:
            msgspec.convert(content, schema)
        except msgspec.ValidationError as exc:
            raise ValueError(f"type {type_} content: {exc}") from None
    try:
        text = _json.encode(content)
    except (TypeError, ValueError, msgspec.EncodeError):
        text = b""  # an extension type or a key JSON has no form for: named below
    if not text or msgspec.json.decode(text) != content:
        raise ValueError(f"{_unrelayable(content, 'content') or 'content'}: cannot be relayed unchanged (maps keyed"
                         " by strings, no NaN or infinity, no binary or extension types)")
    if len(text) > MAX_CONTENT:
        raise ValueError(f"content is over {MAX_CONTENT} bytes as JSON")
    if len(_msgpack.encode(content)) > MAX_CONTENT:  # floats: 9 bytes each, against 4 in JSON ("0.1,")
        raise ValueError(f"content is over {MAX_CONTENT} bytes as MessagePack")


def _unrelayable(value: Any, path: str) -> str:
    """Where in ``value`` (at ``path``) the first thing that JSON does not give back equal
    is, and what it is: for the error message of ``check``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: map key {key!r} is not a string"
            found = _unrelayable(item, f"{path}.{key}")
            if found:
                return found
        return ""
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _unrelayable(item, f"{path}[{index}]")
            if found:
                return found
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path}: {value!r} is not finite"
    if value is None or isinstance(value, (str, int, float)):
        return ""
    return f"{path}: {_kind(value)} is not JSON"


def _kind(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "binary"
    if isinstance(value, msgspec.msgpack.Ext):
        return "extension type"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    return type(value).__name__


def stored(type_: int, content: str | dict[str, Any]) -> str:
    """The text a store keeps for a content."""
    if isinstance(content, str):
        return content
    return _json.encode(content).decode()


def wire(type_: int, text: str) -> str | dict[str, Any]:
    """The content as a message body carries it, from the stored text. An empty text (a
    recalled message) stays empty."""
    if type_ == TEXT or not text:
        return text
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text  # written by an older node as a string: passed on as is
    return value if isinstance(value, dict) else text


def searchable(type_: int, text: str) -> str:
    """What a message search matches for a content: the text of a text message, the
    name of a file, the name and address of a location; nothing for the rest."""
    if type_ == TEXT:
        return text
    if type_ not in SEARCHED_TYPES:
        return ""
    value = wire(type_, text)
    if not isinstance(value, dict):
        return ""
    parts = [value.get("name"), value.get("address")]
    return " ".join(p for p in parts if isinstance(p, str) and p)
