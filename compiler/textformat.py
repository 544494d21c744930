"""Protobuf text format, parsed with line numbers and all problems collected.

Protobuf's own text parser stops at the first problem and forgets where each
field came from. netdef needs both: every unknown field, bad enum value and
misspelling reported at its line, and a map from each field to its line for
the later passes. So the text is parsed in two steps: a tokenizer and a
recursive-descent parser build a small tree of `Entry`s, then `bind` walks the
tree alongside the message descriptors and fills real protobuf messages.
"""
from __future__ import annotations

import codecs
import math
import re
from dataclasses import dataclass, field

from google.protobuf.descriptor import FieldDescriptor as FD

from netdef.errors import PrototxtSyntaxError, Problem, SchemaError, UnknownField, did_you_mean

MAX_DEPTH = 64  # deeper nesting than any real net; keeps recursion bounded

_TOKEN = re.compile(
    r"""
    (?P<newline>\n)
  | (?P<space>[ \t\r\f\v]+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"[^"\\\n]*(?:\\.[^"\\\n]*)*"|'[^'\\\n]*(?:\\.[^'\\\n]*)*')
  | (?P<open_string>["'])
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}<>:\[\],;-])
  | (?P<other>.)
    """,
    re.VERBOSE,
)


@dataclass
class Token:
    kind: str  # string, number, ident, punct, end
    text: str
    line: int


@dataclass
class Entry:
    """One `name: value`, `name: [values]` or `name { ... }` in the text."""

    name: str
    line: int
    values: list  # Token for scalars, list[Entry] for messages
    is_message: bool


Path = tuple  # ("layer", 3, "convolution_param", "kernel_size", 0)


@dataclass
class SourceMap:
    """Where each field of a parsed message came from."""

    path: str
    lines: dict[Path, int] = field(default_factory=dict)
    # After an upgrade, new layer paths point at the layer they came from.
    aliases: dict[Path, Path] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest recorded ancestor."""
        path = tuple(path)
        for prefix_len in range(len(path), 0, -1):
            origin = self.aliases.get(path[:prefix_len])
            if origin is not None:
                path = origin + path[prefix_len:]
                break
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def remap_layers(self, origins: dict[int, Path]) -> None:
        """Record that new layer i came from the (possibly aliased) path origins[i]."""
        resolved = {}
        for index, origin in origins.items():
            head = ("layer", origin[1]) if origin[:1] == ("layer",) else None
            base = self.aliases.get(head, head) if head else origin
            resolved[("layer", index)] = base + origin[2:] if head else origin
        self.aliases = resolved

    def layer_line(self, index: int) -> int | None:
        return self.line_of(("layer", index))

    def layer_spans(self) -> dict[int, tuple[int, int]]:
        """Layer index -> (first, last) line holding its fields (a V1 or V0 layer's own
        lines after an upgrade); one pass over the recorded fields, however many layers."""
        extents: dict[tuple, tuple[int, int]] = {}
        for path, line in self.lines.items():
            head = tuple(path[:2])
            first, last = extents.get(head, (line, line))
            extents[head] = (min(first, line), max(last, line))
        spans = {}
        for head in [key for key in extents if key[0] == "layer"] + \
                [("layer", index) for index in (key[1] for key in self.aliases)]:
            origin = tuple(self.aliases.get(head, head)[:2])
            if origin in extents:
                spans[head[1]] = extents[origin]
        return spans


class _Tokens:
    def __init__(self, text: str, path: str):
        self.path = path
        self.tokens = list(self._scan(text))
        self.pos = 0

    def _scan(self, text: str):
        line = 1
        for match in _TOKEN.finditer(text):
            kind = match.lastgroup
            if kind == "newline":
                line += 1
            elif kind in ("space", "comment"):
                continue
            elif kind == "open_string":
                raise self.error("unterminated string", line)
            elif kind == "other":
                raise self.error(f"unexpected character {match.group()!r}", line)
            else:
                yield Token(kind, match.group(), line)
        yield Token("end", "", line)

    def error(self, message: str, line: int) -> PrototxtSyntaxError:
        return PrototxtSyntaxError(problems=[Problem(PrototxtSyntaxError, message, self.path, line)])

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept(self, text: str) -> bool:
        if self.peek().kind == "punct" and self.peek().text == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str, what: str) -> Token:
        token = self.peek()
        if not self.accept(text):
            found = f"'{token.text}'" if token.kind != "end" else "end of file"
            raise self.error(f"expected '{text}' {what}, found {found}", token.line)
        return token


def parse_tree(text: str, path: str = "<string>") -> list[Entry]:
    """Parse protobuf text into entries; raises PrototxtSyntaxError."""
    return _parse_fields(_Tokens(text, path), closer=None, depth=0)


def _parse_fields(tokens: _Tokens, closer: str | None, depth: int,
                  opened: Token | None = None) -> list[Entry]:
    if depth > MAX_DEPTH:
        raise tokens.error(f"messages nested more than {MAX_DEPTH} deep", tokens.peek().line)
    entries = []
    while True:
        token = tokens.peek()
        if token.kind == "end":
            if closer is not None:
                raise tokens.error(f"missing '{closer}': '{opened.text}' opened here is never "
                                   f"closed (the file ends at line {token.line})", opened.line)
            return entries
        if closer is not None and tokens.accept(closer):
            return entries
        if token.kind != "ident":
            raise tokens.error(f"expected a field name, found '{token.text}'", token.line)
        tokens.take()
        entries.append(_parse_value(tokens, token, depth))
        tokens.accept(",") or tokens.accept(";")


def _parse_value(tokens: _Tokens, name: Token, depth: int) -> Entry:
    colon = tokens.accept(":")
    nxt = tokens.peek()
    if nxt.kind == "punct" and nxt.text in "{<":
        return Entry(name.text, name.line, [_parse_message(tokens, depth, name)], True)
    if not colon:
        raise tokens.error(f"expected ':' or '{{' after field name '{name.text}'", nxt.line)
    if tokens.accept("["):
        return _parse_list(tokens, name, depth)
    return Entry(name.text, name.line, [_parse_scalar(tokens)], False)


def _parse_message(tokens: _Tokens, depth: int, name: Token) -> list[Entry]:
    opener = tokens.take().text
    return _parse_fields(tokens, "}" if opener == "{" else ">", depth + 1, name)


def _parse_list(tokens: _Tokens, name: Token, depth: int) -> Entry:
    values, is_message = [], False
    if tokens.accept("]"):
        return Entry(name.text, name.line, values, False)
    while True:
        nxt = tokens.peek()
        if nxt.kind == "punct" and nxt.text in "{<":
            values.append(_parse_message(tokens, depth, name))
            is_message = True
        else:
            values.append(_parse_scalar(tokens))
        if tokens.accept("]"):
            return Entry(name.text, name.line, values, is_message)
        tokens.expect(",", "between list elements")


def _parse_scalar(tokens: _Tokens) -> Token:
    token = tokens.take()
    if token.kind == "punct" and token.text == "-":
        word = tokens.peek()
        if word.kind == "ident" and word.text.lower() in ("inf", "infinity", "nan"):
            tokens.take()
            return Token("number", "-" + word.text, token.line)
        raise tokens.error("'-' must precede a number", token.line)
    if token.kind == "string":
        parts = [token.text]
        while tokens.peek().kind == "string":  # adjacent strings concatenate
            parts.append(tokens.take().text)
        return Token("string", "".join(parts), token.line)
    if token.kind in ("number", "ident"):
        return token
    found = f"'{token.text}'" if token.kind != "end" else "end of file"
    raise tokens.error(f"expected a value, found {found}", token.line)


# --------------------------------------------------------------------- binding

_INT_RANGES = {  # the values each integer field type holds
    **dict.fromkeys((FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32), (-(2**31), 2**31 - 1)),
    **dict.fromkeys((FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64), (-(2**63), 2**63 - 1)),
    **dict.fromkeys((FD.TYPE_UINT32, FD.TYPE_FIXED32), (0, 2**32 - 1)),
    **dict.fromkeys((FD.TYPE_UINT64, FD.TYPE_FIXED64), (0, 2**64 - 1))}
_FLOAT_TYPES = (FD.TYPE_FLOAT, FD.TYPE_DOUBLE)
_FLOAT_WORDS = {"inf": math.inf, "infinity": math.inf, "nan": math.nan}
_HEX = re.compile(r"[-+]?0[xX][0-9a-fA-F]+")
_DECIMAL = re.compile(r"[-+]?\d+")


class _Binder:
    def __init__(self, path: str, strict: bool, source_map: SourceMap):
        self.path, self.strict, self.source_map = path, strict, source_map
        self.problems: list[tuple[Path, Problem]] = []

    def report(self, kind, message: str, line: int, where: Path, warning=False):
        problem = Problem(kind, message, self.path, line, warning=warning)
        self.problems.append((where, problem))

    def bind(self, entries: list[Entry], message, where: Path) -> None:
        fields = message.DESCRIPTOR.fields_by_name
        seen_singular: dict[str, int] = {}
        counts: dict[str, int] = {}
        for entry in entries:
            fd = fields.get(entry.name)
            if fd is None:
                self.unknown_field(entry, message, where)
                continue
            if not fd.is_repeated:
                if entry.name in seen_singular:
                    self.report(SchemaError, f"field '{entry.name}' is set twice "
                                f"(first at line {seen_singular[entry.name]}); it takes one value",
                                entry.line, where)
                    continue
                seen_singular[entry.name] = entry.line
            if fd.message_type is not None:
                self.bind_messages(entry, fd, message, where, counts)
            else:
                self.bind_scalars(entry, fd, message, where, counts)

    def unknown_field(self, entry: Entry, message, where: Path) -> None:
        type_name = message.DESCRIPTOR.name
        hint = did_you_mean(entry.name, message.DESCRIPTOR.fields_by_name)
        text = f"unknown field '{entry.name}' in {type_name}{hint}"
        if self.strict:
            self.report(UnknownField, text, entry.line, where)
        else:
            self.report(UnknownField, text + "; ignored", entry.line, where, warning=True)

    def bind_messages(self, entry, fd, message, where, counts) -> None:
        if not entry.is_message:
            self.report(SchemaError, f"field '{fd.name}' is a message: write {fd.name} {{ ... }}",
                        entry.line, where)
            return
        for value in entry.values:
            if fd.is_repeated:
                index = counts[fd.name] = counts.get(fd.name, -1) + 1  # 0 for the first
                sub_where = where + (fd.name, index)
                sub = getattr(message, fd.name).add()
            else:
                sub_where = where + (fd.name,)
                sub = getattr(message, fd.name)
                sub.SetInParent()
            self.source_map.lines[sub_where] = entry.line
            self.bind(value, sub, sub_where)

    def bind_scalars(self, entry, fd, message, where, counts) -> None:
        if entry.is_message:
            self.report(SchemaError, f"field '{fd.name}' takes a value, not a message block",
                        entry.line, where)
            return
        if len(entry.values) != 1 and not fd.is_repeated:
            self.report(SchemaError, f"field '{fd.name}' takes one value, not a list", entry.line, where)
            return
        for token in entry.values:
            try:
                value = _convert(token, fd)
            except ValueError as exc:
                self.report(SchemaError, f"field '{fd.name}': {exc}", token.line, where)
                continue
            if fd.is_repeated:
                index = counts[fd.name] = counts.get(fd.name, -1) + 1  # 0 for the first
                self.source_map.lines[where + (fd.name, index)] = token.line
                getattr(message, fd.name).append(value)
            else:
                self.source_map.lines[where + (fd.name,)] = token.line
                setattr(message, fd.name, value)


def _convert(token: Token, fd):
    """Convert one scalar token to the Python value of field `fd`."""
    if fd.type == FD.TYPE_ENUM:
        return _convert_enum(token, fd)
    if fd.type in (FD.TYPE_STRING, FD.TYPE_BYTES):
        if token.kind != "string":
            raise ValueError(f"expects a quoted string, got {token.text}")
        raw = _unescape(token.text)
        if fd.type == FD.TYPE_BYTES:
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("string is not valid UTF-8") from None
    if fd.type == FD.TYPE_BOOL:
        return _convert_bool(token)
    if fd.type in _FLOAT_TYPES:
        return _convert_float(token)
    return _convert_int(token, fd)


def _convert_enum(token: Token, fd):
    enum = fd.enum_type
    if token.kind == "ident":
        value = enum.values_by_name.get(token.text)
        if value is None:
            hint = did_you_mean(token.text, enum.values_by_name)
            known = ", ".join(enum.values_by_name)
            raise ValueError(f"'{token.text}' is not a value of {enum.name}{hint}; "
                             f"expected one of {known}")
        return value.number
    if token.kind == "number":
        number = _convert_int(token, fd)
        if number not in enum.values_by_number:
            raise ValueError(f"{number} is not a value of {enum.name}")
        return number
    raise ValueError(f"expects an enum name of {enum.name}, got {token.text}")


def _convert_bool(token: Token) -> bool:
    words = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}
    value = words.get(token.text if token.kind == "number" else token.text.lower())
    if token.kind == "string" or value is None:
        raise ValueError(f"expects true or false, got {token.text}")
    return value


def _convert_float(token: Token) -> float:
    text = token.text.lower()
    if token.kind in ("ident", "number"):
        sign, word = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.lstrip("+"))
        if word in _FLOAT_WORDS:  # inf, -inf, nan
            return sign * _FLOAT_WORDS[word]
    if token.kind == "number":
        if _HEX.fullmatch(text):
            try:
                return float(int(text, 16))
            except OverflowError:  # beyond any double (> 2^1024)
                raise ValueError(f"{token.text[:20]}... is out of range for a float") from None
        try:
            return float(text.rstrip("f"))
        except ValueError:
            pass
    raise ValueError(f"expects a number, got {token.text}")


def _convert_int(token: Token, fd) -> int:
    text = token.text
    if token.kind != "number" or not (_HEX.fullmatch(text) or _DECIMAL.fullmatch(text)):
        raise ValueError(f"expects an integer, got {text}")
    if len(text) > 40:
        raise ValueError(f"integer {text[:20]}... is out of range")
    value = int(text, 16) if "x" in text.lower() else int(text, 10)
    low, high = _INT_RANGES.get(fd.type, (-(2**63), 2**64 - 1))
    if not low <= value <= high:
        if low == 0 and value < 0:
            raise ValueError(f"expects a non-negative integer, got {text}")
        raise ValueError(f"{text} is out of range [{low}, {high}]")
    return value


# "unrolled" loops: a run of plain characters is one repeat, so a long string costs no
# regex backtracking state per character (a 20 MB name stays a few times 20 MB)
_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"|\'([^\'\\]*(?:\\.[^\'\\]*)*)\'', re.DOTALL)


def _unescape(quoted_parts: str) -> bytes:
    """Decode one or more adjacent quoted strings (C escapes) to bytes."""
    out = bytearray()
    for match in _QUOTED.finditer(quoted_parts):
        body = match.group(1) if match.group(1) is not None else match.group(2)
        try:
            out += codecs.escape_decode(body.encode("utf-8"))[0]
        except ValueError as exc:
            raise ValueError(f"bad escape in string: {exc}") from None
    return bytes(out)


def parse_message(text: str, message, *, path: str = "<string>", strict: bool = False,
                  root: Path = ()) -> tuple[SourceMap, list[tuple[Path, Problem]]]:
    """Fill `message` from protobuf text.

    Returns the source map and the problems found while binding, each with the
    field path it belongs to (so callers can name the layer). Syntax errors
    raise PrototxtSyntaxError at once: nothing after them can be trusted.
    """
    entries = parse_tree(text, path)
    source_map = SourceMap(path)
    binder = _Binder(path, strict, source_map)
    binder.bind(entries, message, root)
    return source_map, binder.problems

