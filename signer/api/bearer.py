"""The Keymanager API's bearer token: the token file, and the check of one call's Authorization header.

The Keymanager API (ethereum/keymanager-APIs) authenticates every call with ``Authorization: Bearer
TOKEN``; the token is a secret the signer keeps in a file that the operator (or the validator
client's tooling) reads.

* ``load_or_create(path)``: the token in ``path``. When the file is absent it is created first, with
  256 random bits (``secrets.token_hex(32)``: 64 hex characters), mode 0600, without ever replacing a
  file another process created meanwhile (``atomicfile.create_new``). An existing file must hold a
  token of at least 256 bits' worth of characters (estimated from its alphabet: 64 hex characters,
  43 base64 characters, 40 of any other visible ASCII) and be writable by its owner alone;
  otherwise ConfigError saying what to do. A file readable by others is used, with a warning.
* ``BearerToken.check(authorization)``: no header, or not ``Bearer TOKEN``, is BearerTokenMissing
  (HTTP 401); another token is BearerTokenWrong (HTTP 403). The comparison takes the same time
  whatever the token given (both sides are hashed first, then compared in constant time).

The token never appears in a log line, a metric, an audit line or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import secrets
import stat
import string
from pathlib import Path

from signer.atomicfile import create_new
from signer.errors import BearerTokenMissing, BearerTokenWrong, ConfigError

log = logging.getLogger(__name__)

TOKEN_BITS = 256
"""The least randomness a token carries, counted from its length and alphabet."""
_HEX = frozenset(string.hexdigits)
_BASE64 = frozenset(string.ascii_letters + string.digits + "+/-_=")
_VISIBLE = frozenset(chr(c) for c in range(0x21, 0x7F))
MAX_TOKEN_CHARS = 4096


def new_token() -> str:
    """A fresh token: 256 random bits as 64 lowercase hex characters."""
    return secrets.token_hex(TOKEN_BITS // 8)


def token_bits(token: str) -> float:
    """The randomness ``token`` can carry at most: its length times the bits of its alphabet
    (hex 4, base64 6, any other visible ASCII log2(94)). 0 for a token with other characters."""
    chars = set(token)
    if not token or not chars <= _VISIBLE:
        return 0.0
    if chars <= _HEX:
        return 4.0 * len(token)
    if chars <= _BASE64:
        return 6.0 * len(token)
    return math.log2(len(_VISIBLE)) * len(token)


def token_problem(token: str) -> str | None:
    """Why ``token`` may not be the Keymanager API token, or None."""
    if not token:
        return "it is empty"
    if len(token) > MAX_TOKEN_CHARS:
        return f"it is over {MAX_TOKEN_CHARS} characters"
    if not set(token) <= _VISIBLE:
        return "it holds characters other than visible ASCII (no spaces)"
    if token_bits(token) < TOKEN_BITS:
        return (
            f"it is too short to carry {TOKEN_BITS} random bits ({len(token)} characters; "
            "64 hex characters, e.g. `openssl rand -hex 32`)"
        )
    return None


class BearerToken:
    """One signer's Keymanager API token (see the module docstring)."""

    def __init__(self, token: str) -> None:
        problem = token_problem(token)
        if problem is not None:
            raise ConfigError(f"the Keymanager API token is refused: {problem}")
        self._digest = hashlib.sha256(token.encode()).digest()

    def check(self, authorization: str | None) -> None:
        """Raise BearerTokenMissing (401) or BearerTokenWrong (403) unless ``authorization`` (the
        Authorization header's value, None when absent) is ``Bearer <this token>``."""
        if authorization is None or not authorization.strip():
            raise BearerTokenMissing(
                "no bearer token: the Keymanager API needs the header 'Authorization: Bearer <token>' "
                "with the token from the signer's keymanager token file"
            )
        scheme, _, given = authorization.strip().partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given or " " in given:
            raise BearerTokenMissing(
                "malformed Authorization header: expected 'Bearer <token>' with the token from the "
                "signer's keymanager token file"
            )
        if not hmac.compare_digest(hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest(), self._digest):
            raise BearerTokenWrong("wrong bearer token: it is not this signer's Keymanager API token")


def load_or_create(path: Path) -> BearerToken:
    """The token in ``path``, created first when the file is absent (the module docstring).
    Raises ConfigError naming the file for one that cannot be read, created or used."""
    path = Path(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists() and create_new(path, (new_token() + "\n").encode()):
            log.warning("Keymanager API token created", extra={"path": str(path)})
        mode = stat.S_IMODE(os.stat(path).st_mode)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"keymanager.token_file: cannot read or create {path}: {type(exc).__name__}") from None
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"keymanager.token_file: {path} is writable by others (mode {mode:04o}): anyone who can "
            "write it chooses the token; chmod 600 it"
        )
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "the Keymanager API token file is readable by others: chmod 600 it",
            extra={"path": str(path), "mode": f"{mode:04o}"},
        )
    lines = text.splitlines()
    token = lines[0].strip() if lines else ""
    try:
        return BearerToken(token)
    except ConfigError as exc:
        raise ConfigError(f"keymanager.token_file: {path}: {exc.message}") from None
