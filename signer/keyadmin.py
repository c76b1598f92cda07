"""Key administration: every operation on the signer's keys and their slashing-protection history,
held once for every front.

The CLI (``signer keys|protection ...``), the admin gRPC API (``signer.api.admin``) and the
Keymanager REST API to come translate their input into these calls and the answers back; they decide
nothing. ``KeyAdmin`` holds the key operations (list, generate, import keystores with their history,
delete, reload, status), ``ProtectionAdmin`` the history operations (EIP-3076 and CometBFT state
import and export, the declaration that the keys never signed).

Rules, the same for every front:

* Who may. Each operation authorizes ``client`` before it reads or changes anything, and a refusal
  (AccessDenied) changes nothing. Listing, generating, importing keystores, reloading and status need
  ``key_admin`` (an import with a history document also ``protection_import``); a deletion needs
  ``key_admin`` for EACH key named (a key that is not loaded is checked as a nameless key with that
  public key). A history import needs ``protection_import`` for every public key its document names,
  so a client scoped to some keys cannot write (or block) another key's history; an export needs
  ``protection_export`` for each key named, and an export naming no keys holds only the keys the
  caller may export. The CLI's operator (``LOCAL_CLIENT`` with ``AllowAll``) may do everything.
* Limits. At most ``max_items`` keystores, keys or public keys per call, and at most as much KDF work
  as that many standard keystores.
* Import. A history document is checked whole first (shape, permissions, network): a refused
  document refuses the call and imports nothing. Then the keystores are decrypted (in parallel,
  ``signer.keys.importer``); then the history of the keys about to be imported, and of those only, is
  imported (all or nothing); only then are the keys sealed into the module and put in the index. A
  key never signs before its history is in the store. Each keystore answers imported, duplicate or
  why not.
* Delete. The keys leave the index first (``KeyIndex.retire_keys``: nothing signs with them any
  more, and every signature they made has its record committed), then their history is exported,
  then they are deleted from the module; if the export fails, they are readmitted and nothing is
  deleted. The history stays in the store: deleting the same keys again answers NOT_ACTIVE with the
  same history (nothing signs with a deleted key, so it cannot have grown). A key with neither key
  nor history is NOT_FOUND, an answer and not a failure of the call.
* Second factor and approval (``signer.approval.AdminGate``). Every operation except ``status``
  first checks the operator's one-time code the call carries (``code``; the fronts pass what the
  call names), before it reads or changes anything. An operation of ``ApprovalKind`` that the
  config requires approval for (delete, the history imports, a keystore import with history) does
  every check it can without changing anything, then answers a ``PendingOperation`` instead of
  running; ``approve_*`` by a second, different operator re-checks the request with the approving
  client's permissions and runs it once, answering what the operation itself answers. The CLI's
  operator and dev on plaintext loopback use a gate without a second factor.
* Key changes (import, generate, delete, reload) are serialized by one lock.
* Secrets (keystore passwords and contents) never appear in a result, message or log line: messages
  come from the error tree, which never carries them.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from rich.console import Console

from signer import errors
from signer.approval import AdminGate, ApprovalKind, PendingOperation
from signer.cometbft.state import imported_sign_bytes_without_timestamp
from signer.keys.importer import (
    DEFAULT_WALLET,
    ImportResult,
    ImportStatus,
    KeystoreDocument,
    decrypt_keystores,
    seal_keystores,
)
from signer.keys.module import KeyModule, check_account_name
from signer.protection.cometbft_state import parse_cometbft_state
from signer.protection.interchange import Interchange, parse_interchange, serialize_interchange
from signer.protection.rules import ConsensusState
from signer.protection.sql_common import check_interchange_network
from signer.protection.store import ImportReport, Initialization, InitializedBy, ProtectionStore
from signer.totp import OperatorCode
from signer.types import (
    AllowAll,
    Authorizer,
    ClientIdentity,
    KeyInfo,
    Monitor,
    NullMonitor,
    Operation,
    Scheme,
    check_chain_id,
)

log = logging.getLogger("signer.keyadmin")

__all__ = [
    "DEFAULT_GENERATE_WALLET",
    "DEFAULT_WALLET",
    "AdminGate",
    "ApprovalKind",
    "CometbftImport",
    "Deletion",
    "ImportReport",
    "ImportResult",
    "ImportStatus",
    "KeyAdmin",
    "KeyIndex",
    "KeyResult",
    "KeyStatus",
    "KeystoreDocument",
    "ModuleIndex",
    "OperatorCode",
    "PendingOperation",
    "ProtectionAdmin",
    "Readiness",
    "Status",
    "check_cometbft_state",
    "check_wallet",
    "keystore_documents",
]

DEFAULT_GENERATE_WALLET = "generated"
PUBLIC_KEY_SCHEMES: dict[int, Scheme] = {48: Scheme.BLS, 33: Scheme.SECP256K1, 32: Scheme.ED25519}

Readiness = Callable[[], tuple[bool, str]]
"""``() -> (ready, reason)``: SignerApp.readiness."""


# --- what the operations work on and answer ---------------------------------------------------


class KeyIndex(Protocol):
    """The index of the keys a signer signs with (``signer.keys.keyring.KeyRing``). The key
    operations tell it when keys come and go."""

    def list_keys(self) -> list[KeyInfo]: ...

    def reload_keys(self) -> list[KeyInfo]:
        """Re-read the module's keys (after an import, a generation, a deletion)."""
        ...

    def retire_keys(self, public_keys: Sequence[bytes]) -> None:
        """Stop signing with these keys now; once this returns, every signature they made has its
        record committed."""
        ...

    def readmit_keys(self, public_keys: Sequence[bytes]) -> list[KeyInfo]:
        """Undo ``retire_keys`` (keys deleted from the module meanwhile stay gone)."""
        ...


class ModuleIndex:
    """The index of a signer that is not running (the CLI): the module's own key list, by name.
    Nothing signs, so there is nothing to retire."""

    def __init__(self, module: KeyModule) -> None:
        self._module = module

    def list_keys(self) -> list[KeyInfo]:
        return sorted(self._module.list_keys(), key=lambda k: k.name)

    def reload_keys(self) -> list[KeyInfo]:
        return self.list_keys()

    def retire_keys(self, public_keys: Sequence[bytes]) -> None:
        pass

    def readmit_keys(self, public_keys: Sequence[bytes]) -> list[KeyInfo]:
        return self.list_keys()


class KeyStatus(enum.StrEnum):
    """What one key of a generation or deletion came to (the Keymanager API's words where it has them)."""

    GENERATED = "generated"
    DELETED = "deleted"
    NOT_ACTIVE = "not_active"
    """Not in the module, but its history is in the store (and is returned)."""
    NOT_FOUND = "not_found"
    """Neither in the module nor in the store."""
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class KeyResult:
    status: KeyStatus
    public_key: bytes = b""
    name: str = ""
    message: str = ""
    error: errors.SignerError | None = None
    """For ERROR: the refusal, as fronts report it (audit, metrics)."""


@dataclass(frozen=True, slots=True)
class Deletion:
    results: tuple[KeyResult, ...]
    """One per public key given, in order."""
    slashing_protection: dict[str, Any]
    """The EIP-3076 document (complete form) of the keys DELETED or NOT_ACTIVE, taken after they
    stopped signing; its ``data`` is empty when there are none."""

    @property
    def returns_history(self) -> bool:
        """Some key was deleted or had history without a key: the document answers for it."""
        return any(r.status in (KeyStatus.DELETED, KeyStatus.NOT_ACTIVE) for r in self.results)


@dataclass(frozen=True, slots=True)
class CometbftImport:
    moved_forward: bool
    """False: the stored state was already at or beyond the imported one (nothing changed)."""
    height: int
    round: int
    step: int


@dataclass(frozen=True, slots=True)
class Status:
    ready: bool
    reason: str
    """Why not ready ("ready" when ready)."""
    keys: tuple[KeyInfo, ...]
    module_kind: str
    store_backend: str
    """"sqlite", "postgres", or "" when unknown."""
    store_problem: errors.SignerError | None
    """None when the protection store answered."""


def keystore_documents(keystores: Sequence[bytes], passwords: Sequence[str]) -> list[KeystoreDocument]:
    """Keystores received over the wire, named ``keystore N`` in results: one password for all, or
    one per keystore (MalformedRequest otherwise)."""
    if len(passwords) not in (1, len(keystores)):
        raise errors.MalformedRequest(
            f"give one password for all keystores or one per keystore: got {len(passwords)} "
            f"passwords for {len(keystores)} keystores"
        )
    password_of = list(passwords) if len(passwords) == len(keystores) else list(passwords) * len(keystores)
    return [
        KeystoreDocument(f"keystore {n}", bytes(body), password)
        for n, (body, password) in enumerate(zip(keystores, password_of, strict=True))
    ]


def check_cometbft_state(public_key: bytes, document: bytes) -> tuple[ConsensusState, bytes | None]:
    """A priv_validator_state.json checked for one key, with no store needed: its shape, its sign
    bytes a canonical vote or proposal, its signature the key's (InterchangeError otherwise). Returns
    the state and its sign bytes without the timestamp, as the store takes them."""
    if not document:
        raise errors.MalformedRequest("the priv_validator_state document is empty")
    state = parse_cometbft_state(document)
    return state, imported_sign_bytes_without_timestamp(public_key, state.sign_bytes, state.signature)


def check_wallet(wallet: str) -> str:
    """``wallet`` if it can name accounts (``wallet/...``), else MalformedRequest saying the rule."""
    try:
        check_account_name(f"{wallet}/0")
    except errors.MalformedRequest:
        raise errors.MalformedRequest(
            f"invalid wallet name {wallet!r}: 1-64 of [A-Za-z0-9._-], starting with a letter or digit"
        ) from None
    return wallet


def key_for(loaded: Sequence[KeyInfo], public_key: bytes) -> KeyInfo:
    """The loaded key with ``public_key``, or a nameless stand-in for one that is not loaded (it is
    authorized by its public key alone); MalformedRequest for a length no key has."""
    for key in loaded:
        if key.public_key == public_key:
            return key
    return _stand_in(public_key)


def _stand_in(public_key: bytes) -> KeyInfo:
    scheme = PUBLIC_KEY_SCHEMES.get(len(public_key))
    if scheme is None:
        raise errors.MalformedRequest(
            f"a public key is 48 (BLS12-381), 33 (secp256k1) or 32 (Ed25519) bytes, got {len(public_key)}"
        )
    return KeyInfo(handle="", name="", scheme=scheme, public_key=public_key)


def _entry_key(entry: dict[str, Any]) -> bytes:
    """The public key of one ``data`` entry of an exported interchange."""
    try:
        return bytes.fromhex(str(entry.get("pubkey", "")).removeprefix("0x"))
    except ValueError:
        return b""


# --- the requests a pending operation keeps until its approval ----------------------------------


@dataclass(frozen=True, slots=True)
class _DeleteRequest:
    public_keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class _KeystoreImportRequest:
    documents: tuple[KeystoreDocument, ...]
    wallet: str
    slashing_protection: bytes


@dataclass(frozen=True, slots=True)
class _InterchangeRequest:
    document: bytes


@dataclass(frozen=True, slots=True)
class _CometbftStateRequest:
    chain_id: str
    public_key: bytes
    document: bytes


_R = TypeVar("_R")


def _request_of(pending: PendingOperation, kind: type[_R]) -> _R:
    if not isinstance(pending.request, kind):  # pragma: no cover - claim() checked the kind
        raise errors.InternalError(f"pending operation {pending.id} holds no {kind.__name__}")
    return pending.request


def _approved_who(who: str, pending: PendingOperation, operator: str | None) -> str:
    """Who an approved import is recorded as: both operators."""
    return f"{who}: asked for by operator '{pending.operator}', approved by operator '{operator}'"


def _hex_keys(public_keys: Sequence[bytes]) -> str:
    shown = ", ".join("0x" + pk.hex() for pk in public_keys[:3])
    return shown + (f" and {len(public_keys) - 3} more" if len(public_keys) > 3 else "")


def _store_backend(store: object) -> str:
    name = type(store).__name__.lower()
    return "postgres" if "postgres" in name else "sqlite" if "sqlite" in name else ""


# --- slashing-protection history ----------------------------------------------------------------


class ProtectionAdmin:
    """The history operations on one protection store, authorized per key."""

    def __init__(
        self,
        store: ProtectionStore,
        *,
        loaded: Callable[[], Sequence[KeyInfo]] = tuple,
        authorizer: Authorizer | None = None,
        backend: str = "",
        gate: AdminGate | None = None,
    ) -> None:
        self.store = store
        self._loaded = loaded
        """The keys the signer holds: they are authorized by name, other public keys by key alone."""
        self.authorizer: Authorizer = authorizer or AllowAll()
        self.backend = backend or _store_backend(store)
        self.gate = gate or AdminGate()

    # EIP-3076

    def check_interchange(self, client: ClientIdentity, document: bytes) -> Interchange:
        """Parse an EIP-3076 document (InterchangeError), authorize PROTECTION_IMPORT for every public
        key it names (AccessDenied naming the first refused key), and refuse a document for another
        network. Writes nothing."""
        interchange = parse_interchange(document)
        for validator in interchange.validators:
            key = key_for(self._loaded(), validator.public_key)
            try:
                self.authorizer.authorize(client, Operation.PROTECTION_IMPORT, key)
            except errors.AccessDenied as exc:
                raise errors.AccessDenied(
                    f"the interchange names 0x{key.public_key.hex()}, which this client may not import for: "
                    f"{exc.message}; nothing was imported"
                ) from None
        check_interchange_network(interchange, self.store.genesis_validators_root)
        return interchange

    def import_interchange(
        self, client: ClientIdentity, document: bytes, *, who: str, code: OperatorCode | None = None
    ) -> ImportReport | PendingOperation:
        """Merge an EIP-3076 document into the store, all or nothing (or, needing approval, the
        pending operation). ``who`` is recorded should the import initialize the store."""
        operator = self.gate.operator(client, code, method="import_interchange")
        interchange = self._check_import(client, document)
        if self.gate.needs_approval(ApprovalKind.IMPORT_INTERCHANGE):
            names = [v.public_key for v in interchange.validators]
            return self.gate.propose(
                ApprovalKind.IMPORT_INTERCHANGE,
                client,
                operator,
                _InterchangeRequest(document),
                public_keys=names,
                document=document,
                summary=f"import the EIP-3076 history of {len(names)} validator(s): {_hex_keys(names)}",
            )
        return self._import_interchange(document, who=who)

    def approve_import_interchange(
        self, client: ClientIdentity, pending_id: str, *, who: str, code: OperatorCode | None = None
    ) -> ImportReport:
        """Run a pending ``import_interchange`` as a second operator (the module docstring)."""
        operator = self.gate.operator(client, code, method="approve_import_interchange")
        pending = self.gate.claim(ApprovalKind.IMPORT_INTERCHANGE, pending_id, client, operator)
        request = _request_of(pending, _InterchangeRequest)
        self._check_import(client, request.document)
        self.gate.take(pending, client, operator)
        return self._import_interchange(request.document, who=_approved_who(who, pending, operator))

    def _check_import(self, client: ClientIdentity, document: bytes) -> Interchange:
        self.authorizer.authorize(client, Operation.PROTECTION_IMPORT, None)
        if not document:
            raise errors.MalformedRequest("the interchange document is empty")
        return self.check_interchange(client, document)

    def _import_interchange(self, document: bytes, *, who: str) -> ImportReport:
        report = self.store.import_interchange(document, who=who)
        log.info(
            "interchange imported",
            extra={
                "validators": report.validators,
                "blocks": report.blocks_imported,
                "attestations": report.attestations_imported,
            },
        )
        return report

    def import_history_of(self, interchange: Interchange, public_keys: Sequence[bytes], *, who: str) -> ImportReport:
        """Import the records of ``public_keys`` only, from a document ``check_interchange`` passed."""
        wanted = set(public_keys)
        histories = [v for v in interchange.validators if v.public_key in wanted]
        document = serialize_interchange(interchange.genesis_validators_root, histories)
        return self.store.import_interchange(document, who=who)

    def export_interchange(
        self, client: ClientIdentity, public_keys: Sequence[bytes] = (), *, code: OperatorCode | None = None
    ) -> dict[str, Any]:
        """The EIP-3076 history of ``public_keys`` (each authorized), or, naming none, of every key
        the caller may export (a filter, not a refusal)."""
        self.gate.operator(client, code, method="export_interchange")
        for public_key in public_keys:
            self.authorizer.authorize(client, Operation.PROTECTION_EXPORT, key_for(self._loaded(), public_key))
        if not public_keys:
            self.authorizer.authorize(client, Operation.PROTECTION_EXPORT, None)
        document = self.store.export_interchange(list(public_keys) or None)
        if not public_keys:
            loaded = {k.public_key: k for k in self._loaded()}
            document["data"] = [entry for entry in document["data"] if self._may_export(client, entry, loaded)]
        return document

    def _may_export(self, client: ClientIdentity, entry: dict[str, Any], loaded: dict[bytes, KeyInfo]) -> bool:
        public_key = _entry_key(entry)
        key = loaded.get(public_key) or _stand_in(public_key)
        return self.authorizer.permits(client, Operation.PROTECTION_EXPORT, key)

    # CometBFT

    def _comet_key(self, chain_id: str, public_key: bytes) -> KeyInfo:
        check_chain_id(chain_id)
        key = key_for(self._loaded(), public_key)
        if key.scheme is Scheme.BLS:
            raise errors.UnsupportedScheme("CometBFT state belongs to a secp256k1 or Ed25519 key, not a BLS key")
        return key

    def import_cometbft_state(
        self,
        client: ClientIdentity,
        chain_id: str,
        public_key: bytes,
        document: bytes,
        *,
        who: str,
        code: OperatorCode | None = None,
    ) -> CometbftImport | PendingOperation:
        """Merge a priv_validator_state.json for one chain and key; it never moves the state back
        (or, needing approval, the pending operation)."""
        operator = self.gate.operator(client, code, method="import_cometbft_state")
        self._check_cometbft_import(client, chain_id, public_key, document)
        if self.gate.needs_approval(ApprovalKind.IMPORT_COMETBFT_STATE):
            return self.gate.propose(
                ApprovalKind.IMPORT_COMETBFT_STATE,
                client,
                operator,
                _CometbftStateRequest(chain_id, public_key, document),
                public_keys=[public_key],
                document=document,
                chain_id=chain_id,
                summary=f"import the CometBFT state of 0x{public_key.hex()} on chain {chain_id!r}",
            )
        return self._import_cometbft_state(chain_id, public_key, document, who=who)

    def approve_import_cometbft_state(
        self, client: ClientIdentity, pending_id: str, *, who: str, code: OperatorCode | None = None
    ) -> CometbftImport:
        """Run a pending ``import_cometbft_state`` as a second operator (the module docstring)."""
        operator = self.gate.operator(client, code, method="approve_import_cometbft_state")
        pending = self.gate.claim(ApprovalKind.IMPORT_COMETBFT_STATE, pending_id, client, operator)
        request = _request_of(pending, _CometbftStateRequest)
        self._check_cometbft_import(client, request.chain_id, request.public_key, request.document)
        self.gate.take(pending, client, operator)
        return self._import_cometbft_state(
            request.chain_id, request.public_key, request.document, who=_approved_who(who, pending, operator)
        )

    def _check_cometbft_import(self, client: ClientIdentity, chain_id: str, public_key: bytes, document: bytes) -> None:
        key = self._comet_key(chain_id, public_key)
        self.authorizer.authorize(client, Operation.PROTECTION_IMPORT, key)
        check_cometbft_state(public_key, document)

    def _import_cometbft_state(self, chain_id: str, public_key: bytes, document: bytes, *, who: str) -> CometbftImport:
        state, without_timestamp = check_cometbft_state(public_key, document)
        moved = self.store.import_cometbft_state(chain_id, public_key, document, without_timestamp, who=who)
        log.info(
            "CometBFT state imported",
            extra={"chain_id": chain_id, "public_key": "0x" + public_key.hex(), "moved_forward": moved},
        )
        return CometbftImport(moved, state.height, state.round, state.step)

    def export_cometbft_state(
        self, client: ClientIdentity, chain_id: str, public_key: bytes, *, code: OperatorCode | None = None
    ) -> dict[str, Any]:
        """The last signed state of one chain and key, as priv_validator_state.json."""
        self.gate.operator(client, code, method="export_cometbft_state")
        key = self._comet_key(chain_id, public_key)
        self.authorizer.authorize(client, Operation.PROTECTION_EXPORT, key)
        return self.store.export_cometbft_state(chain_id, public_key)

    # the store itself

    def declare_keys_never_signed(
        self, client: ClientIdentity, *, who: str, code: OperatorCode | None = None
    ) -> tuple[Initialization, bool]:
        """Initialize a new or emptied store for keys that have never signed. Returns the record that
        holds and whether this call wrote it (False: the store was initialized already)."""
        self.gate.operator(client, code, method="declare_keys_never_signed")
        self.authorizer.authorize(client, Operation.PROTECTION_IMPORT, None)
        before = self.store.initialization()
        if before is not None:
            return before, False
        record = self.store.initialize(InitializedBy.KEYS_NEVER_SIGNED, who)
        return record, record.how == InitializedBy.KEYS_NEVER_SIGNED

    def problem(self) -> errors.SignerError | None:
        """None if the store can serve a transaction now, else why not."""
        try:
            self.store.ping()
        except errors.SignerError as exc:
            return exc
        return None


# --- keys ---------------------------------------------------------------------------------------


class KeyAdmin:
    """The key operations on one key module and the signer's index of it.

    ``protection`` is needed by what touches history (an import with a history document, a
    deletion, status); the CLI's ``keys`` commands run without one. ``max_items`` None: no limit
    per call (the CLI's operator); ``readiness`` None: ready when the module is unlocked and the
    store answers."""

    def __init__(
        self,
        module: KeyModule,
        index: KeyIndex,
        protection: ProtectionAdmin | None = None,
        *,
        authorizer: Authorizer | None = None,
        monitor: Monitor | None = None,
        readiness: Readiness | None = None,
        max_items: int | None = None,
        import_workers: int | None = None,
        gate: AdminGate | None = None,
    ) -> None:
        """``gate`` None: the protection admin's gate, or none (no second factor, no approvals)."""
        self.module = module
        self.index = index
        self.protection = protection
        self.authorizer: Authorizer = authorizer or AllowAll()
        self.monitor: Monitor = monitor or NullMonitor()
        self.readiness = readiness or self._default_readiness
        self.max_items = max_items
        self.import_workers = import_workers
        self.gate = gate or (protection.gate if protection is not None else AdminGate())
        self.lock = threading.Lock()

    def list_keys(
        self, client: ClientIdentity, scheme: Scheme | None = None, *, code: OperatorCode | None = None
    ) -> list[KeyInfo]:
        self.gate.operator(client, code, method="list_keys")
        self.authorizer.authorize(client, Operation.KEY_ADMIN, None)
        return [k for k in self.index.list_keys() if scheme is None or k.scheme == scheme]

    def generate(
        self,
        client: ClientIdentity,
        count: int,
        scheme: Scheme = Scheme.BLS,
        wallet: str = DEFAULT_GENERATE_WALLET,
        *,
        code: OperatorCode | None = None,
    ) -> list[KeyResult]:
        """``count`` new keys made inside the module, named ``wallet/N`` with the first free numbers."""
        self.gate.operator(client, code, method="generate_keys")
        self.authorizer.authorize(client, Operation.KEY_ADMIN, None)
        if count < 1:
            raise errors.MalformedRequest("count must be at least 1")
        if self.max_items is not None and count > self.max_items:
            raise errors.MalformedRequest(f"count {count} is over the limit of {self.max_items} per call; split it")
        check_wallet(wallet)
        with self.lock:
            taken = {k.name for k in self.module.list_keys()}
            names = [name for name in (f"{wallet}/{n}" for n in range(count + len(taken))) if name not in taken]
            results = self._generate(names[:count], scheme)
            self._refresh()
        log.info(
            "keys generated",
            extra={"scheme": scheme.value, "public_keys": ["0x" + r.public_key.hex() for r in results if r.public_key]},
        )
        return results

    def _generate(self, names: list[str], scheme: Scheme) -> list[KeyResult]:
        infos = self.module.generate_many(names, scheme)  # all or nothing (KeyModule.generate_many)
        return [KeyResult(KeyStatus.GENERATED, k.public_key, k.name) for k in infos]

    def import_keystores(
        self,
        client: ClientIdentity,
        documents: Sequence[KeystoreDocument],
        *,
        wallet: str = DEFAULT_WALLET,
        slashing_protection: bytes = b"",
        who: str = "",
        progress: bool = False,
        console: Console | None = None,
        code: OperatorCode | None = None,
    ) -> list[ImportResult] | PendingOperation:
        """Import EIP-2335 keystores, and with them their EIP-3076 history (``slashing_protection``),
        in the order the module docstring gives. One result per keystore, in order (or, for an
        import with history that needs approval, the pending operation). ``who`` is recorded should
        the history import initialize the store."""
        operator = self.gate.operator(client, code, method="import_keystores")
        interchange = self._check_keystore_import(client, documents, wallet, slashing_protection)
        if interchange is not None and self.gate.needs_approval(ApprovalKind.IMPORT_KEYSTORES):
            names = [v.public_key for v in interchange.validators]
            return self.gate.propose(
                ApprovalKind.IMPORT_KEYSTORES,
                client,
                operator,
                _KeystoreImportRequest(tuple(documents), wallet, slashing_protection),
                public_keys=names,
                document=slashing_protection,
                keystores=len(documents),
                summary=(
                    f"import {len(documents)} keystore(s) into wallet {wallet!r} with the EIP-3076 history "
                    f"of {len(names)} validator(s): {_hex_keys(names)}"
                ),
            )
        return self._import_keystores(documents, wallet, interchange, who=who, progress=progress, console=console)

    def approve_import_keystores(
        self, client: ClientIdentity, pending_id: str, *, who: str, code: OperatorCode | None = None
    ) -> list[ImportResult]:
        """Run a pending ``import_keystores`` as a second operator (the module docstring)."""
        operator = self.gate.operator(client, code, method="approve_import_keystores")
        pending = self.gate.claim(ApprovalKind.IMPORT_KEYSTORES, pending_id, client, operator)
        request = _request_of(pending, _KeystoreImportRequest)
        interchange = self._check_keystore_import(
            client, request.documents, request.wallet, request.slashing_protection
        )
        self.gate.take(pending, client, operator)
        return self._import_keystores(
            request.documents, request.wallet, interchange, who=_approved_who(who, pending, operator)
        )

    def _check_keystore_import(
        self, client: ClientIdentity, documents: Sequence[KeystoreDocument], wallet: str, slashing_protection: bytes
    ) -> Interchange | None:
        """Every check of an import that reads nothing but the request: who may, limits, the wallet,
        the history document whole. Returns the checked history (None without one)."""
        self.authorizer.authorize(client, Operation.KEY_ADMIN, None)
        if slashing_protection:
            self.authorizer.authorize(client, Operation.PROTECTION_IMPORT, None)
        if not documents:
            raise errors.MalformedRequest("no keystores given")
        if self.max_items is not None and len(documents) > self.max_items:
            raise errors.MalformedRequest(
                f"{len(documents)} keystores is over the limit of {self.max_items} per call; split it"
            )
        check_wallet(wallet)
        return self._history().check_interchange(client, slashing_protection) if slashing_protection else None

    def _import_keystores(
        self,
        documents: Sequence[KeystoreDocument],
        wallet: str,
        interchange: Interchange | None,
        *,
        who: str,
        progress: bool = False,
        console: Console | None = None,
    ) -> list[ImportResult]:
        with self.lock:
            decryption = decrypt_keystores(
                documents,
                {k.public_key for k in self.module.list_keys()},
                workers=self.import_workers,
                progress=progress,
                console=console,
                max_work=None if self.max_items is None else float(self.max_items),
            )
            if interchange is not None and decryption.public_keys:
                report = self._history().import_history_of(interchange, decryption.public_keys, who=who)
                log.info(
                    "slashing protection imported with keystores",
                    extra={"blocks": report.blocks_imported, "attestations": report.attestations_imported},
                )
            results = seal_keystores(self.module, decryption, wallet)
            self._refresh()
        log.info(
            "keystores imported",
            extra={
                "imported": [
                    "0x" + r.public_key.hex() for r in results if r.status is ImportStatus.IMPORTED and r.public_key
                ],
                "refused": sum(1 for r in results if r.refused),
            },
        )
        return results

    def delete(
        self, client: ClientIdentity, public_keys: Sequence[bytes], *, code: OperatorCode | None = None
    ) -> Deletion | PendingOperation:
        """Retire, export, delete (the module docstring), or, needing approval, the pending
        operation. Every key is authorized before anything is done; a public key of no valid length
        is an ERROR item."""
        operator = self.gate.operator(client, code, method="delete_keys")
        refused, wanted = self._plan_delete(client, public_keys)
        if self.gate.needs_approval(ApprovalKind.DELETE_KEYS):
            return self.gate.propose(
                ApprovalKind.DELETE_KEYS,
                client,
                operator,
                _DeleteRequest(tuple(public_keys)),
                public_keys=public_keys,
                summary=(
                    f"delete {len(public_keys)} key(s) and return their slashing-protection history: "
                    f"{_hex_keys(public_keys)}"
                ),
            )
        return self._delete_planned(public_keys, refused, wanted)

    def approve_delete(self, client: ClientIdentity, pending_id: str, *, code: OperatorCode | None = None) -> Deletion:
        """Run a pending ``delete`` as a second operator (the module docstring)."""
        operator = self.gate.operator(client, code, method="approve_delete_keys")
        pending = self.gate.claim(ApprovalKind.DELETE_KEYS, pending_id, client, operator)
        request = _request_of(pending, _DeleteRequest)
        refused, wanted = self._plan_delete(client, request.public_keys)
        self.gate.take(pending, client, operator)
        return self._delete_planned(request.public_keys, refused, wanted)

    def _plan_delete(
        self, client: ClientIdentity, public_keys: Sequence[bytes]
    ) -> tuple[dict[int, KeyResult], dict[bytes, KeyInfo]]:
        """(ERROR results by position, the keys to delete): every key authorized, or AccessDenied."""
        if not public_keys:
            raise errors.MalformedRequest("no public keys given")
        if self.max_items is not None and len(public_keys) > self.max_items:
            raise errors.MalformedRequest(
                f"{len(public_keys)} keys is over the limit of {self.max_items} per call; split it"
            )
        self._history()  # no store, no deletion: refuse before anything else
        refused: dict[int, KeyResult] = {}
        wanted: dict[bytes, KeyInfo] = {}
        for n, public_key in enumerate(public_keys):
            try:
                key = key_for(self.index.list_keys(), public_key)
            except errors.MalformedRequest as exc:
                refused[n] = KeyResult(KeyStatus.ERROR, public_key, message=exc.message, error=exc)
                continue
            self.authorizer.authorize(client, Operation.KEY_ADMIN, key)  # any refusal: nothing is done
            wanted.setdefault(public_key, key)
        return refused, wanted

    def _delete_planned(
        self, public_keys: Sequence[bytes], refused: dict[int, KeyResult], wanted: dict[bytes, KeyInfo]
    ) -> Deletion:
        history = self._history()
        with self.lock:
            document, by_key = self._delete(history, wanted)
        results = tuple(refused.get(n) or by_key[pk] for n, pk in enumerate(public_keys))
        keep = {r.public_key for r in results if r.status in (KeyStatus.DELETED, KeyStatus.NOT_ACTIVE)}
        document["data"] = [entry for entry in document.get("data", []) if _entry_key(entry) in keep]
        return Deletion(results, document)

    def _delete(
        self, history: ProtectionAdmin, wanted: dict[bytes, KeyInfo]
    ) -> tuple[dict[str, Any], dict[bytes, KeyResult]]:
        """Retire the loaded keys of ``wanted``, export the history of all of them, delete the loaded
        ones from the module; return the export and a result per public key."""
        loaded = sorted(pk for pk, key in wanted.items() if key.name)
        self.index.retire_keys(loaded)
        try:
            document = history.store.export_interchange(sorted(wanted))
        except BaseException:
            self.index.readmit_keys(loaded)  # nothing deleted: the keys sign again
            raise
        with_history = {
            _entry_key(d) for d in document.get("data", []) if d.get("signed_blocks") or d.get("signed_attestations")
        }
        results: dict[bytes, KeyResult] = {}
        for public_key in loaded:
            try:
                self.module.delete(public_key)
            except errors.SignerError as exc:
                results[public_key] = KeyResult(
                    KeyStatus.ERROR, public_key, message=f"not deleted: {exc.message}", error=exc
                )
            else:
                results[public_key] = KeyResult(KeyStatus.DELETED, public_key, wanted[public_key].name)
        self.index.readmit_keys(loaded)
        self._refresh()
        for public_key in wanted.keys() - results.keys():
            if public_key in with_history:
                message = "no such key is loaded; its slashing-protection history is returned"
                results[public_key] = KeyResult(KeyStatus.NOT_ACTIVE, public_key, message=message)
            else:
                message = "no such key is loaded, and no slashing-protection history exists for it"
                results[public_key] = KeyResult(KeyStatus.NOT_FOUND, public_key, message=message)
        deleted = [pk for pk, r in results.items() if r.status is KeyStatus.DELETED]
        log.info(
            "keys deleted",
            extra={
                "public_keys": ["0x" + pk.hex() for pk in sorted(deleted)],
                "failed": sum(1 for r in results.values() if r.status is KeyStatus.ERROR),
            },
        )
        return document, results

    def reload(self, client: ClientIdentity, *, code: OperatorCode | None = None) -> list[KeyInfo]:
        """Re-open the module (a no-op for an open PKCS#11 token) and re-read its keys into the index:
        keys added out of band sign from here on."""
        self.gate.operator(client, code, method="reload_keys")
        self.authorizer.authorize(client, Operation.KEY_ADMIN, None)
        with self.lock:
            self.module.unlock()
            return self._refresh()

    def pending(self, client: ClientIdentity, *, code: OperatorCode | None = None) -> list[PendingOperation]:
        """The operations waiting for approval, for a client that may approve some (``key_admin`` or
        ``protection_import``)."""
        self.gate.operator(client, code, method="list_pending")
        if not self.authorizer.permits(client, Operation.PROTECTION_IMPORT, None):
            self.authorizer.authorize(client, Operation.KEY_ADMIN, None)
        return self.gate.pending()

    def status(self, client: ClientIdentity) -> Status:
        """Read-only: needs ``key_admin`` but no second factor."""
        self.authorizer.authorize(client, Operation.KEY_ADMIN, None)
        history = self._history()
        ready, reason = self.readiness()
        return Status(
            ready=ready,
            reason=reason,
            keys=tuple(self.index.list_keys()),
            module_kind=self.module.kind,
            store_backend=history.backend,
            store_problem=history.problem(),
        )

    def _default_readiness(self) -> tuple[bool, str]:
        """Ready when the module is unlocked and the protection store answers."""
        if not self.module.unlocked:
            return False, "key module is locked"
        problem = self._history().problem()
        if problem is not None:
            return False, f"protection store unreachable: {problem.message}"
        return True, "ready"

    def _history(self) -> ProtectionAdmin:
        if self.protection is None:
            raise errors.ConfigError("this operation needs the slashing-protection store, and none is open")
        return self.protection

    def _refresh(self) -> list[KeyInfo]:
        """Re-read the module into the index; report the keys loaded per scheme."""
        self.index.reload_keys()
        keys = self.index.list_keys()
        for scheme in Scheme:
            self.monitor.keys_loaded(self.module.kind, scheme, sum(1 for k in keys if k.scheme == scheme))
        return keys
