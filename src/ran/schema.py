"""Typed settings: a config dataclass read from a file, a flag or a saved artifact is checked field by field
against its annotations before it is built, and every mismatch is one line naming the field, the value
and what is valid.

    >>> from_dict(RecallTask, {"keys": "tiger"}, "task file t.json")
    ConfigError: task file t.json: keys = 'tiger' is not valid: expected a list of strings

JSON lists become tuples where the field is a tuple; a field whose type is itself a config dataclass
(``RanConfig.reservoir``) is read from a nested object the same way. Ranges and relations between fields
stay in each dataclass's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import re
import string
import types
import typing
from typing import Any

from ran.errors import ConfigError

RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")  # "N" or "LOW-HIGH", integers >= 0
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object"}
_PLURALS = {str: "strings", int: "integers", float: "numbers", bool: "booleans", dict: "objects"}


def from_dict(cls: type, data: Any, what: str) -> Any:
    """``cls(**data)`` after checking every key and value of ``data`` against ``cls``'s fields; an error of the
    dataclass's own checks (a range, a template) is prefixed with ``what`` too."""
    fields = check_fields(cls, data, what)
    try:
        return cls(**fields)
    except ConfigError as error:
        raise ConfigError(f"{what}: {error}") from None


def check_fields(cls: type, data: Any, what: str) -> dict[str, Any]:
    """``data`` with its values converted to the fields' types (lists to tuples, nested configs built);
    raises :class:`ConfigError` on an unknown key or a value of the wrong type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object with the fields {_field_names(cls)}, got {_show(data)}")
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{what}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                          f"valid fields are {_field_names(cls)}")
    hints = typing.get_type_hints(cls)
    converted = {}
    for name, value in data.items():
        converted[name] = _convert(value, hints[name], f"{what}: {name}", name)
    return converted


def describe(hint: Any) -> str:
    """What a value of this annotation looks like, in words: ``tuple[str, ...]`` -> "a list of strings"."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return "any value"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in arguments)
    if origin is tuple:
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return f"a list of {_PLURALS.get(arguments[0], describe(arguments[0]) + ' values')}"
        if len(set(arguments)) == 1:
            return f"a list of {len(arguments)} {_PLURALS.get(arguments[0], 'values')}"
        return f"a list of {len(arguments)} values ({', '.join(describe(a) for a in arguments)})"
    if origin is dict or hint is dict:
        return "an object"
    if dataclasses.is_dataclass(hint):
        return f"an object with the fields {_field_names(hint)}"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _convert(value: Any, hint: Any, label: str, field: str) -> Any:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        for option in arguments:
            if option is type(None):
                continue
            try:
                return _convert(value, option, label, field)
            except ConfigError:
                pass
        raise _mismatch(label, value, hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _mismatch(label, value, hint)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            element_hints = [arguments[0]] * len(value)
        else:
            if len(value) != len(arguments):
                raise _mismatch(label, value, hint)
            element_hints = list(arguments)
        items = []
        for index, (item, item_hint) in enumerate(zip(value, element_hints, strict=True)):
            try:
                items.append(_convert(item, item_hint, f"{label}[{index}]", field))
            except ConfigError:
                raise ConfigError(f"{label}[{index}] = {_show(item)} is not valid: expected {describe(item_hint)} "
                                  f"({field} is {describe(hint)})") from None
        return tuple(items)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _mismatch(label, value, hint)
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return from_dict(hint, value, label)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _mismatch(label, value, hint)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _mismatch(label, value, hint)
        return value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _mismatch(label, value, hint)
    return value


def _mismatch(label: str, value: Any, hint: Any) -> ConfigError:
    return ConfigError(f"{label} = {_show(value)} is not valid: expected {describe(hint)}")


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls) if f.init)


def check_template(text: Any, what: str, fields: tuple[str, ...] = (), required: tuple[str, ...] = ()) -> None:
    """A ``str.format`` template may hold only the named ``fields`` (``{key}``), each plainly (no format spec,
    conversion, index or attribute), and must hold every ``required`` one; literal braces are ``{{`` ``}}``."""
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a string, got {_show(text)}")
    allowed = " and ".join("{" + f + "}" for f in fields)
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise ConfigError(f"{what} {_show(text)} is not a valid template ({error}): write {{{{ and }}}} for literal "
                          "braces") from None
    found = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if name not in fields or spec or conversion:
            rule = f"only {allowed} may appear" if fields else "it must not contain a field"
            raise ConfigError(f"{what} {_show(text)} has the field {shown}: {rule} (write {{{{ and }}}} for literal "
                              "braces)")
        found.add(name)
    missing = [name for name in required if name not in found]
    if missing:
        raise ConfigError(f"{what} {_show(text)} does not contain {{{missing[0]}}}")


def parse_range(text: str, what: str) -> tuple[int, int]:
    """An inclusive range of integers >= 0 as a flag writes it: ``"0-8"`` -> (0, 8), ``"4"`` -> (4, 4). A reversed
    or malformed range is one line naming ``what`` (e.g. "delay", "reservoir seed")."""
    match = RANGE.fullmatch(text)
    if match is None:
        raise ConfigError(f"{what} {text!r} is not N or LOW-HIGH with integers >= 0 (e.g. 0-8)")
    low = int(match[1])
    high = low if match[2] is None else int(match[2])
    if low > high:
        raise ConfigError(f"{what} range {text!r} is reversed: give LOW-HIGH with LOW <= HIGH")
    return low, high
