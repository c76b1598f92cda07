"""KeyRing: the index of the keys a running signer signs with.

It answers "which key does this request name, and may it sign now": by account name, by public key,
or by CometBFT chain (the account configured for the chain). Keys can be locked (AccountManager
Lock/Unlock) and retired (leaving before an admin deletion: nothing resolves to them any more, and
``is_live`` tells the signing step to refuse an item already past protection). The index is
rebuilt whole from the module's list on ``reload_keys``, which refuses a module that lists one name
or one public key twice. The key-admin core uses it through ``signer.keyadmin.KeyIndex``.

A share of a distributed account (``validator_keys``) is also found by its composite public key,
and signs under the composite key's slashing history (``history_key``). Which keys are shares is
read once per reload (``history_keys``), so resolving a plain key never asks the distributed accounts.

The signing path reads ``live`` and ``history_keys`` directly: both are swapped whole on reload, so
they are read without the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from signer import errors
from signer.keys.module import KeyModule
from signer.types import KeyInfo, KeyRef, Scheme, ValidatorKeys

CHAIN_SCHEMES = (Scheme.SECP256K1, Scheme.ED25519)


class KeyRing:
    """``KeyRing(module, chains={chain_id: account}, validator_keys=...)``: loads the module's keys at
    once if it is unlocked."""

    def __init__(
        self,
        module: KeyModule,
        *,
        chains: Mapping[str, str] | None = None,
        validator_keys: ValidatorKeys | None = None,
    ) -> None:
        self.module = module
        self.chains = dict(chains or {})
        """chain_id -> account name of the key that signs for it."""
        self.validator_keys = validator_keys
        """Shares of distributed accounts: their history is their composite key's, and a request
        may name them by it (signer.distributed.accounts)."""
        self._lock = threading.Lock()
        self._by_name: dict[str, KeyInfo] = {}
        self.live: Mapping[bytes, KeyInfo] = {}
        """The loaded keys by public key: not retired, not deleted."""
        self.history_keys: Mapping[bytes, bytes] = {}
        """Share public key -> the composite key whose slashing history it signs under; a key not
        in it signs under its own public key."""
        self._locked: set[bytes] = set()
        self._retired: set[bytes] = set()
        self.reload_keys()

    # --- keys come and go (signer.keyadmin.KeyIndex) ----------------------------------------------

    def reload_keys(self) -> list[KeyInfo]:
        """Re-read the module's key list (after import, generate, delete). Raises DuplicateKey, and
        keeps the index it had, when the module lists a name or a public key twice."""
        infos = self.module.list_keys() if self.module.unlocked else []
        validator_keys = self.validator_keys
        history_keys = (
            {} if validator_keys is None else {k.public_key: validator_keys.history_key(k.public_key) for k in infos}
        )
        with self._lock:
            infos = [k for k in infos if k.public_key not in self._retired]
            by_name: dict[str, KeyInfo] = {}
            by_public_key: dict[bytes, KeyInfo] = {}
            for key in infos:
                if key.name in by_name:
                    raise errors.DuplicateKey(f"the key module lists account {key.name!r} twice")
                if key.public_key in by_public_key:
                    raise errors.DuplicateKey(f"the key module lists public key {key.public_key_hex} twice")
                by_name[key.name] = key
                by_public_key[key.public_key] = key
            shares = {k: h for k, h in history_keys.items() if h != k}
            # A share must never be resolvable without its history: the old and the new mappings
            # both hold while the indexes are swapped (a key no longer live is refused before it signs).
            self.history_keys = {**self.history_keys, **shares}
            self._by_name, self.live = by_name, by_public_key
            self.history_keys = shares
        return infos

    def retire_keys(self, public_keys: Sequence[bytes]) -> None:
        """Stop signing with these keys now (before they are deleted from the module): no request
        resolves to them, and ``is_live`` is false for them, so an item already past protection is
        refused before it is signed. ``reload_keys`` keeps them out until ``readmit_keys``."""
        with self._lock:
            self._retired.update(bytes(pk) for pk in public_keys)
        self.reload_keys()

    def readmit_keys(self, public_keys: Sequence[bytes]) -> list[KeyInfo]:
        """Undo ``retire_keys`` (deleted keys stay gone: the module no longer lists them)."""
        with self._lock:
            self._retired.difference_update(bytes(pk) for pk in public_keys)
        return self.reload_keys()

    def list_keys(self) -> list[KeyInfo]:
        with self._lock:
            return sorted(self._by_name.values(), key=lambda k: k.name)

    def has_account(self, name: str) -> bool:
        """A key named ``name`` is loaded (a new account may not take the name)."""
        return name in self._by_name

    def is_live(self, public_key: bytes) -> bool:
        """Still in the index (not retired, not deleted)."""
        return public_key in self.live  # the dict is swapped whole: no lock needed

    # --- locking (AccountManager) -------------------------------------------------------------

    def lock(self, key: KeyInfo) -> None:
        self._locked.add(key.public_key)

    def unlock(self, key: KeyInfo) -> None:
        self._locked.discard(key.public_key)

    # --- resolving a request's key ----------------------------------------------------------------

    def lookup(self, ref: KeyRef) -> KeyInfo:
        """The key ``ref`` names, locked or not. Raises MalformedRequest or UnknownKey."""
        return self.resolve(ref, None, unlocked=False)

    def history_key(self, key: KeyInfo) -> bytes:
        """The validator whose slashing history ``key`` signs under (a share: its composite key)."""
        return self.history_keys.get(key.public_key, key.public_key)

    def is_share(self, public_key: bytes) -> bool:
        """Whether ``public_key`` is a share of a distributed account held here, or the composite key
        of one (what this signer signs for it is a partial signature)."""
        if self.validator_keys is None:
            return False
        return (
            self.validator_keys.key_for(public_key) is not None
            or self.validator_keys.history_key(public_key) != public_key
        )

    def resolve(self, ref: KeyRef, scheme: Scheme | None, *, unlocked: bool = True) -> KeyInfo:
        """The key ``ref`` names: of ``scheme`` (None: any) and, unless ``unlocked`` is false, not
        locked. Raises MalformedRequest, UnknownKey, UnsupportedScheme or KeyLocked."""
        account, public_key = ref.account, ref.public_key
        if (account is None) == (public_key is None):
            raise errors.MalformedRequest("name the key by exactly one of account or public key")
        if account is not None:
            key = self._by_name.get(account)
        else:
            key = self.live.get(public_key or b"")
            if key is None and self.validator_keys is not None:  # a composite key names the share held
                share = self.validator_keys.key_for(public_key or b"")
                key = None if share is None else self.live.get(share)
        if key is None:
            raise errors.UnknownKey(f"no key loaded for {ref.describe()}")
        if scheme is not None and key.scheme != scheme:
            raise errors.UnsupportedScheme(f"{ref.describe()} is a {key.scheme} key, this call needs {scheme}")
        if unlocked and key.public_key in self._locked:
            raise errors.KeyLocked(f"{ref.describe()} is locked")
        return key

    def chain_key(self, chain_id: str) -> KeyInfo:
        """The unlocked key configured for CometBFT chain ``chain_id``."""
        account = self.chains.get(chain_id)
        if account is None:
            raise errors.UnknownKey(f"no key is configured for chain_id {chain_id!r}")
        key = self.lookup(KeyRef(account=account))
        if key.scheme not in CHAIN_SCHEMES:
            raise errors.UnsupportedScheme(f"chain {chain_id!r} is configured with a {key.scheme} key")
        if key.public_key in self._locked:
            raise errors.KeyLocked(f"the key of chain {chain_id!r} is locked")
        return key
