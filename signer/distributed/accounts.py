"""Distributed accounts held by this signer: each one a share, sealed in the key module like any BLS
key, plus what makes it a share (its id, the threshold, the participants, the composite key).

The share itself is an ordinary key of the module, named ``wallet/account``, signed through the same
service, protection, permissions, rate limits, metrics and audit as any key. What the module cannot
hold lives in ``distributed.json`` beside it (written by ``signer.atomicfile``), one record per share:

- ``name``, ``participant_id``, ``threshold``, ``participants`` (id, host, port), ``uuid``;
- ``share_public_key`` (the module's key), ``composite_public_key`` (the validator's key on chain)
  and, when known, the ``verification_vector`` (element 0 is the composite key);
- ``seal``: the share's own BLS signature of the record's digest. A record the share did not sign
  (edited, or moved to another share) refuses the start (ModuleTampered): the composite key says
  which slashing history a share signs under, so an edited record must never be believed.

The slashing history of a share is kept under the composite public key (``history_key``): it is the
validator's key on chain, an EIP-3076 export/import names it, and a sign request may name it
(``key_for``). Vouch names distributed accounts by account name, which works as for any key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import uuid as _uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from signer import jsondoc
from signer.atomicfile import atomic_write
from signer.crypto import bls
from signer.crypto import threshold as th
from signer.distributed.dkg import CommitResult, Endpoint
from signer.errors import (
    InvalidShare,
    KeyModuleError,
    MalformedDocument,
    MalformedRequest,
    ModuleTampered,
    UnknownKey,
)
from signer.types import KeyInfo, Scheme

log = logging.getLogger(__name__)

FILE_NAME: Final = "distributed.json"
VERSION: Final = 1
MAX_FILE_BYTES: Final = 16 * 1024 * 1024
_SEAL_TAG: Final = b"validator-signer/distributed-account/v1\x00"


class ShareModule(Protocol):
    """What this module needs of the key module (signer.keys.module.KeyModule offers all of it)."""

    def list_keys(self) -> list[KeyInfo]: ...

    def import_secret(self, name: str, scheme: Scheme, secret: bytes) -> KeyInfo: ...

    def delete(self, public_key: bytes) -> KeyInfo: ...

    def sign(self, public_key: bytes, message: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class DistributedAccount:
    """One share this signer holds of a distributed account. No secret here."""

    name: str
    participant_id: int
    threshold: int
    participants: tuple[Endpoint, ...]
    share_public_key: bytes
    composite_public_key: bytes
    uuid: bytes
    verification_vector: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        ids = th.check_participant_ids(p.id for p in self.participants)
        th.check_threshold(self.threshold, len(ids))
        if self.participant_id not in ids:
            raise MalformedRequest(f"participant {self.participant_id} is not among the participants {list(ids)}")
        for what, key in (("share", self.share_public_key), ("composite", self.composite_public_key)):
            if not bls.key_validate(key):
                raise MalformedRequest(f"the {what} public key of {self.name!r} is not a valid BLS public key")
        if len(self.uuid) != 16:
            raise MalformedRequest("an account uuid is 16 bytes")
        if self.verification_vector:
            vector = th.VerificationVector(self.verification_vector)
            if vector.threshold != self.threshold:
                raise MalformedRequest(
                    f"a verification vector of {vector.threshold} elements for a threshold of {self.threshold}"
                )
            if vector.public_key != self.composite_public_key:
                raise MalformedRequest("element 0 of the verification vector is not the composite public key")
            if vector.public_share(self.participant_id) != self.share_public_key:
                raise InvalidShare(
                    f"the share of participant {self.participant_id} does not match the verification vector"
                )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "participant_id": self.participant_id,
            "threshold": self.threshold,
            "participants": [{"id": p.id, "name": p.name, "port": p.port} for p in self.participants],
            "share_public_key": "0x" + self.share_public_key.hex(),
            "composite_public_key": "0x" + self.composite_public_key.hex(),
            "uuid": str(_uuid.UUID(bytes=self.uuid)),
            "verification_vector": ["0x" + c.hex() for c in self.verification_vector],
        }

    @classmethod
    def from_json(cls, entry: Any) -> DistributedAccount:
        try:
            return cls(
                name=str(entry["name"]),
                participant_id=_int(entry["participant_id"]),
                threshold=_int(entry["threshold"]),
                participants=tuple(
                    Endpoint(_int(p["id"]), str(p["name"]), _int(p["port"])) for p in entry["participants"]
                ),
                share_public_key=_hex(entry["share_public_key"]),
                composite_public_key=_hex(entry["composite_public_key"]),
                uuid=_uuid.UUID(str(entry["uuid"])).bytes,
                verification_vector=tuple(_hex(c) for c in entry.get("verification_vector", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedDocument(f"a distributed account record is malformed: {type(exc).__name__}") from exc

    def digest(self) -> bytes:
        """What the seal signs: a hash of the canonical record under a tag of its own (it can never
        be a consensus signing root)."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(_SEAL_TAG + canonical).digest()


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


def _hex(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("not 0x-prefixed hex")
    return bytes.fromhex(value[2:])


class DistributedAccounts:
    """The shares this signer holds, keyed by share public key, with their records on disk.

    Implements ``signer.types.ValidatorKeys`` for the KeyRing (a share's history is its composite
    key's). ``on_change`` is called after a share is added or removed (the KeyRing re-reads the
    module). Thread-safe."""

    def __init__(
        self,
        module: ShareModule,
        data_dir: Path,
        *,
        on_change: Callable[[], object] = lambda: None,
    ) -> None:
        self._module = module
        self._path = Path(data_dir) / FILE_NAME
        self._on_change = on_change
        self._lock = threading.RLock()
        self._accounts: dict[bytes, DistributedAccount] = {}
        self._seals: dict[bytes, bytes] = {}
        self._by_composite: dict[bytes, bytes] = {}
        self.load()

    @property
    def path(self) -> Path:
        return self._path

    # --- reading --------------------------------------------------------------------------

    def load(self) -> None:
        """Read the records; keep those whose share the module holds. A record whose seal does not
        verify under its share refuses (ModuleTampered)."""
        with self._lock:
            accounts: dict[bytes, DistributedAccount] = {}
            seals: dict[bytes, bytes] = {}
            if self._path.exists():
                try:
                    with self._path.open("rb") as fh:
                        raw = jsondoc.read_at_most(fh, MAX_FILE_BYTES)
                except OSError as exc:
                    raise KeyModuleError(f"cannot read {self._path}: {exc.strerror}") from exc
                document = jsondoc.load_json(raw, max_bytes=MAX_FILE_BYTES, what=str(self._path))
                if not isinstance(document, dict) or document.get("version") != VERSION:
                    raise MalformedDocument(f"{self._path} is not a version {VERSION} distributed accounts file")
                entries = document.get("accounts")
                if not isinstance(entries, list):
                    raise MalformedDocument(f"{self._path} has no list of accounts")
                held = {k.public_key: k for k in self._module.list_keys()}
                for entry in entries:
                    account = DistributedAccount.from_json(entry)
                    try:
                        seal = _hex(entry.get("seal"))
                    except ValueError as exc:
                        raise ModuleTampered(f"{self._path}: the record of {account.name!r} has no seal") from exc
                    if not bls.verify(account.share_public_key, account.digest(), seal):
                        raise ModuleTampered(
                            f"{self._path}: the record of {account.name!r} is not sealed by its share; "
                            "it was edited or does not belong to this key"
                        )
                    key = held.get(account.share_public_key)
                    if key is None:
                        # The share was deleted from the module (admin DeleteKeys): the record goes
                        # with the next write.
                        log.warning(
                            "distributed account record without its share in the module: ignored",
                            extra={"account": account.name},
                        )
                        continue
                    if key.name != account.name:
                        raise ModuleTampered(
                            f"{self._path}: the share of {account.name!r} is named {key.name!r} in the module"
                        )
                    accounts[account.share_public_key] = account
                    seals[account.share_public_key] = seal
            self._accounts = accounts
            self._seals = seals
            self._by_composite = {a.composite_public_key: pk for pk, a in accounts.items()}

    def accounts(self) -> list[DistributedAccount]:
        with self._lock:
            return sorted(self._accounts.values(), key=lambda a: a.name)

    def by_share(self, public_key: bytes) -> DistributedAccount | None:
        with self._lock:
            return self._accounts.get(bytes(public_key))

    # --- ValidatorKeys --------------------------------------------------------------------

    def history_key(self, public_key: bytes) -> bytes:
        account = self.by_share(public_key)
        return public_key if account is None else account.composite_public_key

    def key_for(self, public_key: bytes) -> bytes | None:
        with self._lock:
            return self._by_composite.get(bytes(public_key))

    # --- writing --------------------------------------------------------------------------

    def add(
        self,
        name: str,
        share: th.SecretShare,
        *,
        threshold: int,
        participants: Sequence[Endpoint],
        composite_public_key: bytes,
        verification_vector: Sequence[bytes] = (),
        account_uuid: bytes | None = None,
    ) -> DistributedAccount:
        """Seal ``share`` into the module as ``name`` and record it. All or nothing: if the record
        cannot be written the share is deleted again. Refuses a second share of the same composite
        key (one signer, one participant of an account)."""
        with self._lock:
            if bytes(composite_public_key) in self._by_composite:
                raise MalformedRequest(
                    f"this signer already holds a share of composite key 0x{bytes(composite_public_key).hex()}"
                )
            account = DistributedAccount(
                name=name,
                participant_id=share.participant_id,
                threshold=threshold,
                participants=tuple(sorted(participants, key=lambda p: p.id)),
                share_public_key=share.public_key(),
                composite_public_key=bytes(composite_public_key),
                uuid=account_uuid if account_uuid is not None else _uuid.uuid4().bytes,
                verification_vector=tuple(bytes(c) for c in verification_vector),
            )
            key = self._module.import_secret(name, Scheme.BLS, share.to_bytes())
            try:
                seal = self._module.sign(key.public_key, account.digest())
                accounts = {**self._accounts, account.share_public_key: account}
                seals = {**self._seals, account.share_public_key: seal}
                self._write(accounts, seals)
            except BaseException:
                self._module.delete(key.public_key)
                raise
            self._accounts, self._seals = accounts, seals
            self._by_composite[account.composite_public_key] = account.share_public_key
        self._on_change()
        return account

    def add_result(self, result: CommitResult) -> DistributedAccount:
        """Store what a DKG's Commit produced at this participant."""
        p = result.parameters
        return self.add(
            p.account,
            result.key_share,
            threshold=p.threshold,
            participants=p.participants,
            composite_public_key=result.composite_public_key,
            verification_vector=result.verification_vector.commitments,
        )

    def remove(self, share_public_key: bytes) -> DistributedAccount:
        """Delete the share from the module and its record (an aborted key generation)."""
        with self._lock:
            account = self._accounts.get(bytes(share_public_key))
            if account is None:
                raise UnknownKey(f"no distributed account with share 0x{bytes(share_public_key).hex()}")
            accounts = {k: v for k, v in self._accounts.items() if k != account.share_public_key}
            seals = {k: v for k, v in self._seals.items() if k != account.share_public_key}
            with contextlib.suppress(UnknownKey):  # already gone from the module: the record goes as well
                self._module.delete(account.share_public_key)
            self._write(accounts, seals)
            self._accounts, self._seals = accounts, seals
            self._by_composite.pop(account.composite_public_key, None)
        self._on_change()
        return account

    def _write(self, accounts: dict[bytes, DistributedAccount], seals: dict[bytes, bytes]) -> None:
        entries = []
        for pk, seal in sorted(seals.items()):
            account = accounts.get(pk)
            if account is None:
                continue
            entries.append({**account.to_json(), "seal": "0x" + seal.hex()})
        data = json.dumps({"version": VERSION, "accounts": entries}, indent=1, sort_keys=True).encode("utf-8")
        try:
            atomic_write(self._path, data)
        except OSError as exc:
            raise KeyModuleError(f"cannot write {self._path}: {exc.strerror}") from exc
