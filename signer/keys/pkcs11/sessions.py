"""The signing sessions of one module: a fixed pool, each caching its private-key objects.

A session serves one thread at a time, so signing threads borrow one (``borrow``, waiting at most
``SESSION_WAIT_S``) and give it back. Private-key objects are bound to the session that found them,
so each pooled session keeps its own cache (public key -> key object).
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator
from typing import Any, Final

from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11err

from signer.errors import KeyModuleError
from signer.keys.pkcs11.cryptoki import edge

DEFAULT_POOL_SIZE: Final = 4
SESSION_WAIT_S: Final = 30.0


class PooledSession:
    __slots__ = ("keys", "session")

    def __init__(self, session: Any) -> None:
        self.session = session
        self.keys: dict[bytes, Any] = {}
        """public key -> private key object bound to this session."""


class SessionPool:
    """The sessions a module signs on; empty until ``open``, emptied by ``close``."""

    def __init__(self, token_label: str) -> None:
        self.token_label = token_label
        self._queue: queue.LifoQueue[PooledSession] = queue.LifoQueue()
        self._sessions: list[PooledSession] = []

    def open(self, token: Any, size: int) -> None:
        """Open ``size`` read-only sessions on ``token`` (after login: they share it)."""
        with edge(self.token_label, "opening sessions"):
            for _ in range(size):
                pooled = PooledSession(token.open())
                self._sessions.append(pooled)
                self._queue.put(pooled)

    def close(self) -> None:
        """Close every session; a session borrowed now is not given back to the new, empty pool."""
        sessions, self._sessions = self._sessions, []
        self._queue = queue.LifoQueue()
        for pooled in sessions:
            pooled.keys.clear()
            with contextlib.suppress(p11err.PKCS11Error):
                pooled.session.close()

    def forget(self, public_key: bytes) -> None:
        """Drop a deleted key's cached objects from every session."""
        for pooled in self._sessions:
            pooled.keys.pop(public_key, None)

    def private_key(self, pooled: PooledSession, public_key: bytes, cka_id: bytes | None, name: str) -> Any:
        """The private-key object of account ``name`` on ``pooled`` (found by CKA_ID once, then cached)."""
        key = pooled.keys.get(public_key)
        if key is None:
            found = list(pooled.session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: cka_id}))
            if len(found) != 1:
                raise KeyModuleError(f"PKCS#11 token {self.token_label!r}: {len(found)} private keys for {name!r}")
            key = found[0]
            pooled.keys[public_key] = key
        return key

    @contextlib.contextmanager
    def borrow(self) -> Iterator[PooledSession]:
        """A free session for the body; KeyModuleError after ``SESSION_WAIT_S`` without one."""
        pool = self._queue
        try:
            pooled = pool.get(timeout=SESSION_WAIT_S)
        except queue.Empty as exc:
            raise KeyModuleError(
                f"PKCS#11 token {self.token_label!r}: no free session after {SESSION_WAIT_S:.0f} s"
            ) from exc
        try:
            yield pooled
        finally:
            if pooled in self._sessions:
                pool.put(pooled)
