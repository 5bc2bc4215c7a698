"""Files: written atomically, never over something nobody asked to replace, never outside a folder; a JSON
settings file read with one-line errors.

Every file ran writes goes through :func:`atomic_write`: a temporary file in the same directory
(``.<name>.tmp-<random>``), fsynced, renamed over the target, and the directory fsynced, so a crash at
any moment leaves the old file or the new one, never a torn one. The checks here run before any work
starts (before a model loads or a step trains), so a bad output path costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ran.errors import ConfigError

TEMP_MARK = ".tmp-"  # temporary files are ".<name>.tmp-<random>"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a name used as one path component
MAX_JSON_BYTES = 64 * 2**20  # a settings file (a task with thousands of keys is well under a megabyte)


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[str], object]) -> Path:
    """Write ``content`` (text, bytes, or a function that writes the file at the path it is given) to
    ``path`` atomically; returns the path. Readable by everyone (0644), like a file ``open`` creates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            if isinstance(content, str):
                stream.write(content.encode())
            elif isinstance(content, bytes):
                stream.write(content)
        if callable(content):
            content(temporary)
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates the file private
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)  # the rename itself survives a power cut
    return path


def fsync_directory(directory: str | os.PathLike) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to a journal in a single write, then fsync: a crash loses at most that line."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (line.rstrip("\n") + "\n").encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_name(name: str, what: str) -> str:
    """A name that becomes one path component (a results file, a session): it cannot leave its folder."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"invalid {what} {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a "
                          "letter or digit (no '/' or '..': a name cannot leave its folder)")
    return name


def check_directory(path: str | os.PathLike, flag: str) -> Path:
    """Refuse, in one line, a ``path`` that is a file, lies inside a file, or could not be written (into it, or
    into its nearest existing parent, where it would be created). Creates nothing: it writes and removes a
    probe file. Called before any work starts, so an unwritable output costs nothing."""
    directory = Path(path)
    existing = next(p for p in (directory, *directory.parents) if p.exists() or p == Path(p.anchor or "."))
    if not existing.is_dir():
        where = "is a file" if existing == directory else f"lies inside the file {existing}"
        raise ConfigError(f"{flag} {path} {where}: give a directory")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".write-check{TEMP_MARK}", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        where = "" if existing == directory else f" (its parent {existing} is not)"
        raise ConfigError(f"{flag} {path} is not writable{where}: {error.strerror or error}; give a directory you "
                          "can write to") from None
    return directory


def check_new(path: str | os.PathLike, flag: str, overwrite: bool, what: str = "file") -> Path:
    """Refuse to replace an existing file or non-empty directory unless ``overwrite`` (``--overwrite``)."""
    path = Path(path)
    exists = path.is_file() or (path.is_dir() and any(path.iterdir()))
    if exists and not overwrite:
        raise ConfigError(f"{flag}: the {what} {path} already exists; pass --overwrite to replace it, or choose "
                          "another name or directory")
    if path.exists() and not path.is_dir() and what == "artifact":
        raise ConfigError(f"{flag}: {path} is a file, not an artifact directory")
    return path


def read_small_text(path: Path, what: str, limit: int, give: str, kind: str,
                    error: type[ConfigError] = ConfigError) -> str:
    """The text of a UTF-8 text file of at most ``limit`` bytes; a directory, a missing, oversized, binary or
    unreadable file is one clear ``error`` naming ``what`` (e.g. "task file"), what to ``give`` instead (e.g.
    "a JSON file") and, for the size, the ``kind`` of file the limit is for."""
    if path.is_dir():
        raise error(f"{what} {path} is a directory: give {give}")
    try:
        size = path.stat().st_size
        if size > limit:
            raise error(f"{what} {path} is {size:,} bytes, more than the {limit:,} {kind} may have")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not a text file (not UTF-8): give {give}") from None
    except OSError as failure:
        raise error(f"{what} {path} cannot be read ({failure.strerror or failure})") from None
    return text


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; a missing file, a directory, a binary or unreadable file, bad JSON or another
    JSON type is one clear error."""
    path = Path(path)
    text = read_small_text(path, what, MAX_JSON_BYTES, "a JSON file", "a settings file")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        reason = error if isinstance(error, json.JSONDecodeError) else "nested too deeply"
        raise ConfigError(f"{what} {path} is not valid JSON: {reason}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a JSON object {{...}}, not {type(data).__name__}")
    return data
