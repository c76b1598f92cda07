"""Servicers of our own admin API (proto/signer/admin/v1): KeyAdmin, ProtectionAdmin, Status.

They translate proto messages to calls on the key module, the protection store and the
SigningService's key index, and back; every decision about signing stays the service's.

Rules, the same for every method:

* Permissions. Every call authorizes through ``service.authorizer`` before it reads or changes
  anything: ListKeys, GenerateKeys, ReloadKeys, GetStatus and ImportKeystores need
  ``key_admin`` (ImportKeystores with a ``slashing_protection`` document also ``protection_import``);
  DeleteKeys needs ``key_admin`` for EACH key named (a key that is not loaded is checked as an
  unnamed key with that public key); ImportInterchange and ImportCometbftState need
  ``protection_import``, ExportInterchange and ExportCometbftState ``protection_export``, checked per
  key when the request names keys, else with ``key=None``. An imported EIP-3076 document (also
  ImportKeystores' ``slashing_protection``) is authorized for EVERY public key it names, so a client
  scoped to some keys cannot write (or block) another key's history; an export that names no keys
  holds only the keys the caller may export. A refusal ends the call with gRPC PERMISSION_DENIED
  (``status.abort``) and changes nothing.
* Bad input is answered in the response, never as a gRPC error: the gRPC status is OK and
  ``status`` is RESPONSE_STATUS_REFUSED with a ``message`` that says why (malformed JSON, a document
  for another genesis_validators_root, wrong password count, bad wallet name, no such key...);
  RESPONSE_STATUS_FAILED when a backend failed (protection store or key module unavailable) and a
  retry may succeed. ``status.admin_status`` is the one mapping from the error tree. Per-item
  problems (one keystore with a wrong password) are ItemResults with ITEM_STATUS_ERROR; the response
  is then PARTIAL (some items refused) or REFUSED (all). DUPLICATE, NOT_FOUND and NOT_ACTIVE are
  answers, not refusals.
* Secrets (keystore passwords and contents) never appear in a message or a log line: messages
  come from the error tree, which never carries them, and unexpected exceptions are reported by
  type name only.

* Documents that can outgrow one gRPC message (DeleteKeys' history, ExportInterchange) are
  answered as a server stream of chunks (``DOCUMENT_CHUNK_BYTES``; see the proto's conventions):
  the first message is the whole answer with the document cut to its first chunk and ``*_size``
  set, the rest carry one chunk each. ``read_document`` joins them on the client side.

Key changes are serialized by one lock. ImportKeystores imports the ``slashing_protection``
document first (all or nothing: a refused document refuses the whole call and imports no key), then
decrypts the keystores (in parallel, ``signer.keys.importer``) and seals them into the module, then
refreshes the service's key index: the keys sign from the moment the call answers. DeleteKeys first
takes the keys out of the index (``service.retire_keys``: nothing signs with them any more), then
exports their EIP-3076 history, then deletes them from the module; if the export fails, the keys are
put back and nothing is deleted. The answer streams after the deletion; the history stays in the
protection store, so a stream that breaks loses nothing: DeleteKeys of the same keys again answers
NOT_ACTIVE with the same history (nothing signs with a deleted key, so it cannot have grown).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

import signer
from signer import errors
from signer.api import status
from signer.api._proto.signer.admin.v1 import admin_pb2, admin_pb2_grpc
from signer.api.context import CallContext
from signer.cometbft.state import imported_sign_bytes_without_timestamp
from signer.keys import eip2335
from signer.keys.importer import DEFAULT_WALLET, ImportResult, ImportStatus, import_keystores
from signer.keys.module import check_account_name
from signer.protection.cometbft_state import parse_cometbft_state
from signer.protection.interchange import parse_interchange
from signer.service import Outcome, SigningService
from signer.types import ClientIdentity, KeyInfo, Operation, Scheme, check_chain_id

log = logging.getLogger("signer.admin")

_Resp = TypeVar("_Resp")
_Chunked = TypeVar("_Chunked", admin_pb2.DeleteKeysResponse, admin_pb2.ExportInterchangeResponse)

Readiness = Callable[[], tuple[bool, str]]
"""``() -> (ready, reason)``: SignerApp.readiness."""

DEFAULT_GENERATE_WALLET = "generated"
DOCUMENT_CHUNK_BYTES = 1024 * 1024
"""Bytes of a streamed document per message: well under gRPC's default 4 MiB message limit."""
DOCUMENT_FIELDS: dict[type[Any], str] = {
    admin_pb2.DeleteKeysResponse: "slashing_protection",
    admin_pb2.ExportInterchangeResponse: "interchange_json",
}

SCHEME_TO_PROTO: dict[Scheme, admin_pb2.KeyScheme] = {
    Scheme.BLS: admin_pb2.KEY_SCHEME_BLS12_381,
    Scheme.SECP256K1: admin_pb2.KEY_SCHEME_SECP256K1,
    Scheme.ED25519: admin_pb2.KEY_SCHEME_ED25519,
}
PROTO_TO_SCHEME: dict[int, Scheme] = {int(v): k for k, v in SCHEME_TO_PROTO.items()}
MODULE_KINDS: dict[str, admin_pb2.KeyModuleKind] = {
    "emulated": admin_pb2.KEY_MODULE_KIND_EMULATED,
    "pkcs11": admin_pb2.KEY_MODULE_KIND_PKCS11,
}
STORE_BACKENDS: dict[str, admin_pb2.StoreBackend] = {
    "sqlite": admin_pb2.STORE_BACKEND_SQLITE,
    "postgres": admin_pb2.STORE_BACKEND_POSTGRES,
}
PUBLIC_KEY_SCHEMES: dict[int, Scheme] = {48: Scheme.BLS, 33: Scheme.SECP256K1, 32: Scheme.ED25519}

SERVICE_NAMES: tuple[str, ...] = tuple(
    admin_pb2.DESCRIPTOR.services_by_name[name].full_name for name in ("KeyAdmin", "ProtectionAdmin", "Status")
)


# --- shared plumbing ------------------------------------------------------------------------


def _scheme_of(request_scheme: int, *, default: Scheme | None) -> Scheme | None:
    if request_scheme == admin_pb2.KEY_SCHEME_UNSPECIFIED:
        return default
    scheme = PROTO_TO_SCHEME.get(int(request_scheme))
    if scheme is None:
        raise errors.MalformedRequest(f"unknown key scheme {int(request_scheme)}")
    return scheme


def _check_public_key(public_key: bytes) -> Scheme:
    scheme = PUBLIC_KEY_SCHEMES.get(len(public_key))
    if scheme is None:
        raise errors.MalformedRequest(
            f"a public key is 48 (BLS12-381), 33 (secp256k1) or 32 (Ed25519) bytes, got {len(public_key)}"
        )
    return scheme


def _check_wallet(wallet: str) -> str:
    try:
        check_account_name(f"{wallet}/0")
    except errors.MalformedRequest:
        raise errors.MalformedRequest(
            f"invalid wallet name {wallet!r}: 1-64 of [A-Za-z0-9._-], starting with a letter or digit"
        ) from None
    return wallet


def _stand_in(public_key: bytes) -> KeyInfo:
    """A nameless KeyInfo for a public key that is not loaded: authorized by its public key alone."""
    return KeyInfo(handle="", name="", scheme=_check_public_key(public_key), public_key=public_key)


def _scheme_counts(keys: Sequence[KeyInfo]) -> list[admin_pb2.SchemeCount]:
    return [
        admin_pb2.SchemeCount(scheme=proto, count=sum(1 for k in keys if k.scheme == scheme))
        for scheme, proto in SCHEME_TO_PROTO.items()
    ]


def _batch_status(results: Sequence[admin_pb2.ItemResult]) -> tuple[admin_pb2.ResponseStatus, str]:
    refused = sum(1 for r in results if r.status == admin_pb2.ITEM_STATUS_ERROR)
    if refused == 0:
        return admin_pb2.RESPONSE_STATUS_OK, ""
    if refused == len(results):
        return admin_pb2.RESPONSE_STATUS_REFUSED, f"all {refused} items were refused; see the item results"
    return admin_pb2.RESPONSE_STATUS_PARTIAL, f"{refused} of {len(results)} items were refused; see the item results"


def _chunks(response: _Chunked) -> Iterator[_Chunked]:
    """``response`` as a stream: itself with the document cut to its first chunk and the size set,
    then one message per further chunk."""
    field = DOCUMENT_FIELDS[type(response)]
    document = bytes(getattr(response, field))
    setattr(response, field, document[:DOCUMENT_CHUNK_BYTES])
    setattr(response, f"{field}_size", len(document))
    yield response
    for start in range(DOCUMENT_CHUNK_BYTES, len(document), DOCUMENT_CHUNK_BYTES):
        chunk = type(response)()
        setattr(chunk, field, document[start : start + DOCUMENT_CHUNK_BYTES])
        yield chunk


def read_document(stream: Iterable[_Chunked]) -> tuple[_Chunked, bytes]:
    """Client side of a streamed answer: (the first message, the whole document). Raises
    MalformedRequest if the stream ended without a message or short of the announced size."""
    first: _Chunked | None = None
    parts: list[bytes] = []
    for message in stream:
        first = message if first is None else first
        parts.append(bytes(getattr(message, DOCUMENT_FIELDS[type(message)])))
    if first is None:
        raise errors.MalformedRequest("the answer stream ended without a message")
    document = b"".join(parts)
    size = int(getattr(first, f"{DOCUMENT_FIELDS[type(first)]}_size"))
    if len(document) != size:
        raise errors.MalformedRequest(f"the answer stream carried {len(document)} of {size} document bytes")
    return first, document


def default_readiness(service: SigningService) -> Readiness:
    """Readiness as SignerApp judges it: module unlocked and protection store reachable."""

    def readiness() -> tuple[bool, str]:
        if not service.keys.unlocked:
            return False, "key module is locked"
        try:
            service.store.ping()
        except errors.SignerError as exc:
            return False, f"protection store unreachable: {exc.message}"
        return True, "ready"

    return readiness


def _store_backend_name(store: object) -> str:
    name = type(store).__name__.lower()
    return "postgres" if "postgres" in name else "sqlite" if "sqlite" in name else ""


class _AdminBase:
    def __init__(self, service: SigningService, calls: CallContext, lock: threading.Lock) -> None:
        self.service = service
        self.calls = calls
        self.lock = lock

    def _authorize(self, client: ClientIdentity, operation: Operation, key: KeyInfo | None = None) -> None:
        """Raises AccessDenied; ``_call`` turns it into gRPC PERMISSION_DENIED."""
        self.service.authorizer.authorize(client, operation, key)

    def _authorize_interchange(self, client: ClientIdentity, document: bytes) -> None:
        """PROTECTION_IMPORT for every public key the EIP-3076 document names (AccessDenied naming
        the first refused key: nothing is imported). A document that does not parse is refused as
        InterchangeError, before anything is written."""
        for validator in parse_interchange(document).validators:
            key = self._key_for(validator.public_key)
            try:
                self._authorize(client, Operation.PROTECTION_IMPORT, key)
            except errors.AccessDenied as exc:
                raise errors.AccessDenied(
                    f"the interchange names 0x{key.public_key.hex()}, which this client may not import for: "
                    f"{exc.message}; nothing was imported"
                ) from None

    def _may(self, client: ClientIdentity, operation: Operation, key: KeyInfo) -> bool:
        try:
            self._authorize(client, operation, key)
        except errors.AccessDenied:
            return False
        return True

    def _key_for(self, public_key: bytes) -> KeyInfo:
        """The loaded key, or a nameless stand-in for one that is not loaded (for authorization)."""
        for key in self.service.list_keys():
            if key.public_key == public_key:
                return key
        return _stand_in(public_key)

    def _exportable(self, client: ClientIdentity, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The entries of an export whose keys ``client`` may export (a filter, not a refusal)."""
        loaded = {k.public_key: k for k in self.service.list_keys()}
        kept = []
        for entry in entries:
            public_key = _hex_key(entry)
            key = loaded.get(public_key) or _stand_in(public_key)
            if self._may(client, Operation.PROTECTION_EXPORT, key):
                kept.append(entry)
        return kept

    def _call(
        self,
        context: grpc.ServicerContext,
        method: str,
        build: Callable[[ClientIdentity], tuple[_Resp, list[Outcome]]],
        refused: Callable[..., _Resp],
    ) -> _Resp:
        started = time.perf_counter()
        client = self.calls.client(context)
        try:
            response, outcomes = build(client)
        except errors.AccessDenied as exc:
            log.warning("admin call denied", extra={"method": method, "client": client.name, "reason": exc.message})
            self.calls.report(context, method, [Outcome(error=exc)], time.perf_counter() - started)
            status.abort(context, exc)
            raise  # not reached: abort raises
        except errors.SignerError as exc:
            log.info("admin call refused", extra={"method": method, "client": client.name, "reason": exc.message})
            response = refused(status=status.admin_status(exc), message=status.describe(exc))
            outcomes = [Outcome(error=exc)]
        except Exception as exc:  # a bug: say which kind, never the details (they may hold input)
            log.error("admin call failed", extra={"method": method, "client": client.name, "error": type(exc).__name__})
            error = errors.InternalError(f"internal error ({type(exc).__name__})")
            response = refused(status=status.admin_status(error), message=status.describe(error))
            outcomes = [Outcome(error=error)]
        self.calls.report(context, method, outcomes, time.perf_counter() - started)
        return response

    def _stream(
        self,
        context: grpc.ServicerContext,
        method: str,
        build: Callable[[ClientIdentity], tuple[_Chunked, list[Outcome]]],
        refused: Callable[..., _Chunked],
    ) -> Iterator[_Chunked]:
        """``_call``, answered as a stream of document chunks (``_chunks``). A generator: the call
        runs when gRPC asks for the first message."""
        yield from _chunks(self._call(context, method, build, refused))

    def _refresh_keys(self) -> list[KeyInfo]:
        """Re-read the module into the service's index; report keys loaded per scheme."""
        self.service.reload_keys()
        keys = self.service.list_keys()
        for scheme in Scheme:
            self.service.monitor.keys_loaded(self.service.keys.kind, scheme, sum(1 for k in keys if k.scheme == scheme))
        return keys


def _item_error(index: int, public_key: bytes | None, message: str) -> admin_pb2.ItemResult:
    return admin_pb2.ItemResult(
        index=index, public_key=public_key or b"", status=admin_pb2.ITEM_STATUS_ERROR, message=message
    )


_IMPORT_PREFIX: dict[ImportStatus, str] = {
    ImportStatus.WRONG_PASSWORD: "wrong password",
    ImportStatus.MALFORMED: "malformed keystore",
    ImportStatus.FAILED: "import failed",
}


# --- KeyAdmin -------------------------------------------------------------------------------


class KeyAdminServicer(_AdminBase, admin_pb2_grpc.KeyAdminServicer):
    def __init__(
        self,
        service: SigningService,
        calls: CallContext,
        lock: threading.Lock | None = None,
        *,
        import_workers: int | None = None,
    ) -> None:
        super().__init__(service, calls, lock or threading.Lock())
        self.import_workers = import_workers

    # ListKeys

    def ListKeys(self, request: admin_pb2.ListKeysRequest, context: grpc.ServicerContext) -> admin_pb2.ListKeysResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ListKeysResponse, list[Outcome]]:
            self._authorize(client, Operation.KEY_ADMIN)
            scheme = _scheme_of(request.scheme, default=None)
            kind = MODULE_KINDS.get(self.service.keys.kind, admin_pb2.KEY_MODULE_KIND_UNSPECIFIED)
            keys = [
                admin_pb2.KeyInfo(
                    public_key=k.public_key, scheme=SCHEME_TO_PROTO[k.scheme], account=k.name, module=kind
                )
                for k in self.service.list_keys()
                if scheme is None or k.scheme == scheme
            ]
            return admin_pb2.ListKeysResponse(status=admin_pb2.RESPONSE_STATUS_OK, keys=keys), []

        return self._call(context, "ListKeys", build, admin_pb2.ListKeysResponse)

    # ImportKeystores

    def ImportKeystores(
        self, request: admin_pb2.ImportKeystoresRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ImportKeystoresResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ImportKeystoresResponse, list[Outcome]]:
            self._authorize(client, Operation.KEY_ADMIN)
            protection = bytes(request.slashing_protection)
            if protection:
                self._authorize(client, Operation.PROTECTION_IMPORT)
            keystores = [bytes(k) for k in request.keystores]
            passwords = list(request.passwords)
            if not keystores:
                raise errors.MalformedRequest("no keystores given")
            if len(keystores) > self.calls.max_batch_items:
                raise errors.MalformedRequest(
                    f"{len(keystores)} keystores is over the limit of {self.calls.max_batch_items} per call; split it"
                )
            if len(passwords) not in (1, len(keystores)):
                raise errors.MalformedRequest(
                    f"give one password for all keystores or one per keystore: got {len(passwords)} "
                    f"passwords for {len(keystores)} keystores"
                )
            wallet = _check_wallet(request.wallet or DEFAULT_WALLET)
            if protection:
                self._authorize_interchange(client, protection)
            with self.lock:
                if protection:
                    report = self.service.store.import_interchange(protection, who=_admin_who(client))
                    log.info(
                        "slashing protection imported with keystores",
                        extra={"blocks": report.blocks_imported, "attestations": report.attestations_imported},
                    )
                results = self._import(keystores, passwords, wallet)
                self._refresh_keys()
            items = [self._import_item(n, ks, r) for n, (ks, r) in enumerate(zip(keystores, results, strict=True))]
            code, message = _batch_status(items)
            log.info(
                "keystores imported",
                extra={
                    "imported": [
                        "0x" + r.public_key.hex()
                        for r in results
                        if r.status is ImportStatus.IMPORTED and r.public_key is not None
                    ],
                    "refused": sum(1 for i in items if i.status == admin_pb2.ITEM_STATUS_ERROR),
                },
            )
            outcomes = [
                Outcome(error=errors.KeystoreError(i.message) if i.status == admin_pb2.ITEM_STATUS_ERROR else None)
                for i in items
            ]
            return admin_pb2.ImportKeystoresResponse(status=code, message=message, results=items), outcomes

        return self._call(context, "ImportKeystores", build, admin_pb2.ImportKeystoresResponse)

    def _import(self, keystores: list[bytes], passwords: list[str], wallet: str) -> list[ImportResult]:
        """Write the (encrypted) keystores to a private temporary directory and run the parallel
        importer over them; the directory is removed before returning."""
        with tempfile.TemporaryDirectory(prefix="signer-import-") as tmp:
            paths: list[Path] = []
            for n, body in enumerate(keystores):
                path = Path(tmp) / f"keystore-{n}.json"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(body)
                paths.append(path)
            password_of = dict(zip(paths, passwords if len(passwords) > 1 else passwords * len(paths), strict=True))
            results = import_keystores(
                self.service.keys,
                paths,
                password_of.__getitem__,
                wallet=wallet,
                workers=self.import_workers,
                progress=False,
                max_work=float(self.calls.max_batch_items),  # as much as that many standard keystores
            )
            # The importer names keystores by path: keep the temporary paths out of messages.
            return [
                ImportResult(r.source, r.status, r.message.replace(str(p), f"keystore {n}"), r.public_key, r.name)
                for n, (p, r) in enumerate(zip(paths, results, strict=True))
            ]

    @staticmethod
    def _import_item(index: int, keystore: bytes, result: ImportResult) -> admin_pb2.ItemResult:
        public_key = result.public_key
        if public_key is None:
            try:  # the keystore's own (public) pubkey field, when it can be read
                public_key = eip2335.parse_keystore(keystore).pubkey
            except errors.KeystoreError:
                public_key = None
        if result.status is ImportStatus.IMPORTED:
            return admin_pb2.ItemResult(
                index=index, public_key=public_key or b"", status=admin_pb2.ITEM_STATUS_IMPORTED
            )
        if result.status is ImportStatus.DUPLICATE:
            return admin_pb2.ItemResult(
                index=index,
                public_key=public_key or b"",
                status=admin_pb2.ITEM_STATUS_DUPLICATE,
                message=result.message,
            )
        prefix = _IMPORT_PREFIX.get(result.status, str(result.status))
        return _item_error(index, public_key, f"{prefix}: {result.message}" if result.message else prefix)

    # GenerateKeys

    def GenerateKeys(
        self, request: admin_pb2.GenerateKeysRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GenerateKeysResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.GenerateKeysResponse, list[Outcome]]:
            self._authorize(client, Operation.KEY_ADMIN)
            count = int(request.count)
            if count < 1:
                raise errors.MalformedRequest("count must be at least 1")
            if count > self.calls.max_batch_items:
                raise errors.MalformedRequest(
                    f"count {count} is over the limit of {self.calls.max_batch_items} per call; split it"
                )
            scheme = _scheme_of(request.scheme, default=Scheme.BLS)
            assert scheme is not None
            wallet = _check_wallet(request.wallet or DEFAULT_GENERATE_WALLET)
            module = self.service.keys
            with self.lock:
                taken = {k.name for k in module.list_keys()}
                names: list[str] = []
                number = 0
                while len(names) < count:
                    name = f"{wallet}/{number}"
                    if name not in taken:
                        names.append(name)
                    number += 1
                infos = module.generate_many(names, scheme)  # one module write, all or nothing
                items = [
                    admin_pb2.ItemResult(index=n, public_key=k.public_key, status=admin_pb2.ITEM_STATUS_GENERATED)
                    for n, k in enumerate(infos)
                ]
                self._refresh_keys()
            log.info(
                "keys generated",
                extra={
                    "scheme": scheme.value,
                    "public_keys": ["0x" + i.public_key.hex() for i in items if i.public_key],
                },
            )
            code, message = _batch_status(items)
            outcomes = [
                Outcome(error=errors.KeyModuleError(i.message) if i.status == admin_pb2.ITEM_STATUS_ERROR else None)
                for i in items
            ]
            return admin_pb2.GenerateKeysResponse(status=code, message=message, results=items), outcomes

        return self._call(context, "GenerateKeys", build, admin_pb2.GenerateKeysResponse)

    # DeleteKeys

    def DeleteKeys(
        self, request: admin_pb2.DeleteKeysRequest, context: grpc.ServicerContext
    ) -> Iterator[admin_pb2.DeleteKeysResponse]:
        def build(client: ClientIdentity) -> tuple[admin_pb2.DeleteKeysResponse, list[Outcome]]:
            public_keys = [bytes(pk) for pk in request.public_keys]
            if not public_keys:
                raise errors.MalformedRequest("no public keys given")
            if len(public_keys) > self.calls.max_batch_items:
                raise errors.MalformedRequest(
                    f"{len(public_keys)} keys is over the limit of {self.calls.max_batch_items} per call; split it"
                )
            results: dict[int, admin_pb2.ItemResult] = {}
            wanted: dict[bytes, KeyInfo] = {}
            for n, pk in enumerate(public_keys):
                try:
                    key = self._key_for(pk)
                except errors.MalformedRequest as exc:
                    results[n] = _item_error(n, pk, exc.message)
                    continue
                self._authorize(client, Operation.KEY_ADMIN, key)  # any refusal: nothing is done
                wanted.setdefault(pk, key)
            with self.lock:
                document = self._delete(public_keys, wanted, results)
            items = [results[n] for n in range(len(public_keys))]
            keep = {
                bytes(i.public_key)
                for i in items
                if i.status in (admin_pb2.ITEM_STATUS_DELETED, admin_pb2.ITEM_STATUS_NOT_ACTIVE)
            }
            document["data"] = [d for d in document.get("data", []) if _hex_key(d) in keep]
            code, message = _batch_status(items)
            outcomes = [
                Outcome(error=errors.KeyModuleError(i.message) if i.status == admin_pb2.ITEM_STATUS_ERROR else None)
                for i in items
            ]
            return (
                admin_pb2.DeleteKeysResponse(
                    status=code,
                    message=message,
                    results=items,
                    slashing_protection=json.dumps(document, indent=1).encode() if keep else b"",
                ),
                outcomes,
            )

        return self._stream(context, "DeleteKeys", build, admin_pb2.DeleteKeysResponse)

    def _delete(
        self, public_keys: list[bytes], wanted: dict[bytes, KeyInfo], results: dict[int, admin_pb2.ItemResult]
    ) -> dict[str, Any]:
        """Retire the loaded keys (no more signing), export their history, delete them; fill
        ``results`` and return the export (every key in ``wanted``)."""
        loaded = {pk for pk, key in wanted.items() if key.name}
        self.service.retire_keys(sorted(loaded))
        try:
            export = self.service.store.export_interchange(sorted(wanted))
        except BaseException:
            self.service.readmit_keys(sorted(loaded))  # nothing deleted: the keys sign again
            raise
        with_history = {
            _hex_key(d) for d in export.get("data", []) if d.get("signed_blocks") or d.get("signed_attestations")
        }
        deleted: set[bytes] = set()
        failed: dict[bytes, str] = {}
        for pk in sorted(loaded):
            try:
                self.service.keys.delete(pk)
            except errors.SignerError as exc:
                failed[pk] = status.describe(exc)
            else:
                deleted.add(pk)
        self.service.readmit_keys(sorted(loaded))
        self._refresh_keys()
        for n, pk in enumerate(public_keys):
            if n in results:
                continue
            if pk in deleted:
                results[n] = admin_pb2.ItemResult(index=n, public_key=pk, status=admin_pb2.ITEM_STATUS_DELETED)
            elif pk in failed:
                results[n] = _item_error(n, pk, f"not deleted: {failed[pk]}")
            elif pk in with_history:
                results[n] = admin_pb2.ItemResult(
                    index=n,
                    public_key=pk,
                    status=admin_pb2.ITEM_STATUS_NOT_ACTIVE,
                    message="no such key is loaded; its slashing-protection history is returned",
                )
            else:
                results[n] = admin_pb2.ItemResult(
                    index=n,
                    public_key=pk,
                    status=admin_pb2.ITEM_STATUS_NOT_FOUND,
                    message="no such key is loaded, and no slashing-protection history exists for it",
                )
        log.info(
            "keys deleted",
            extra={"public_keys": ["0x" + pk.hex() for pk in sorted(deleted)], "failed": len(failed)},
        )
        return export

    # ReloadKeys

    def ReloadKeys(
        self, request: admin_pb2.ReloadKeysRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ReloadKeysResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ReloadKeysResponse, list[Outcome]]:
            self._authorize(client, Operation.KEY_ADMIN)
            with self.lock:
                self.service.keys.unlock()  # re-reads the module (a no-op for an open PKCS#11 token)
                keys = self._refresh_keys()
            return (
                admin_pb2.ReloadKeysResponse(status=admin_pb2.RESPONSE_STATUS_OK, keys_loaded=_scheme_counts(keys)),
                [],
            )

        return self._call(context, "ReloadKeys", build, admin_pb2.ReloadKeysResponse)


def _admin_who(client: ClientIdentity) -> str:
    """Who an admin import is recorded as, should it initialize the protection store."""
    return f"admin API client '{client.name}'"


def _hex_key(entry: dict[str, Any]) -> bytes:
    value = entry.get("pubkey", "")
    try:
        return bytes.fromhex(str(value).removeprefix("0x"))
    except ValueError:
        return b""


# --- ProtectionAdmin ------------------------------------------------------------------------


class ProtectionAdminServicer(_AdminBase, admin_pb2_grpc.ProtectionAdminServicer):
    def __init__(self, service: SigningService, calls: CallContext, lock: threading.Lock | None = None) -> None:
        super().__init__(service, calls, lock or threading.Lock())

    def ImportInterchange(
        self, request: admin_pb2.ImportInterchangeRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ImportInterchangeResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ImportInterchangeResponse, list[Outcome]]:
            self._authorize(client, Operation.PROTECTION_IMPORT)
            document = bytes(request.interchange_json)
            if not document:
                raise errors.MalformedRequest("interchange_json is empty")
            self._authorize_interchange(client, document)
            report = self.service.store.import_interchange(document, who=_admin_who(client))
            log.info(
                "interchange imported",
                extra={
                    "validators": report.validators,
                    "blocks": report.blocks_imported,
                    "attestations": report.attestations_imported,
                },
            )
            return (
                admin_pb2.ImportInterchangeResponse(
                    status=admin_pb2.RESPONSE_STATUS_OK,
                    validators=report.validators,
                    blocks_imported=report.blocks_imported,
                    attestations_imported=report.attestations_imported,
                    blocks_skipped=report.blocks_skipped,
                    attestations_skipped=report.attestations_skipped,
                ),
                [],
            )

        return self._call(context, "ImportInterchange", build, admin_pb2.ImportInterchangeResponse)

    def ExportInterchange(
        self, request: admin_pb2.ExportInterchangeRequest, context: grpc.ServicerContext
    ) -> Iterator[admin_pb2.ExportInterchangeResponse]:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ExportInterchangeResponse, list[Outcome]]:
            public_keys = [bytes(pk) for pk in request.public_keys]
            if public_keys:
                for pk in public_keys:
                    self._authorize(client, Operation.PROTECTION_EXPORT, self._key_for(pk))
            else:
                self._authorize(client, Operation.PROTECTION_EXPORT)
            document = self.service.store.export_interchange(public_keys or None)
            if not public_keys:  # all the caller may export, and nothing else
                document["data"] = self._exportable(client, document["data"])
            return (
                admin_pb2.ExportInterchangeResponse(
                    status=admin_pb2.RESPONSE_STATUS_OK, interchange_json=json.dumps(document, indent=1).encode()
                ),
                [],
            )

        return self._stream(context, "ExportInterchange", build, admin_pb2.ExportInterchangeResponse)

    def _chain_and_key(self, chain_id: str, public_key: bytes) -> KeyInfo:
        check_chain_id(chain_id)
        key = self._key_for(public_key)
        if key.scheme is Scheme.BLS:
            raise errors.UnsupportedScheme("CometBFT state belongs to a secp256k1 or Ed25519 key, not a BLS key")
        return key

    def ImportCometbftState(
        self, request: admin_pb2.ImportCometbftStateRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ImportCometbftStateResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ImportCometbftStateResponse, list[Outcome]]:
            public_key = bytes(request.public_key)
            key = self._chain_and_key(request.chain_id, public_key)
            self._authorize(client, Operation.PROTECTION_IMPORT, key)
            document = bytes(request.state_json)
            if not document:
                raise errors.MalformedRequest("state_json is empty")
            state = parse_cometbft_state(document)
            without_timestamp = imported_sign_bytes_without_timestamp(public_key, state.sign_bytes, state.signature)
            moved = self.service.store.import_cometbft_state(
                request.chain_id, public_key, document, without_timestamp, who=_admin_who(client)
            )
            log.info(
                "CometBFT state imported",
                extra={"chain_id": request.chain_id, "public_key": "0x" + public_key.hex(), "moved_forward": moved},
            )
            return admin_pb2.ImportCometbftStateResponse(status=admin_pb2.RESPONSE_STATUS_OK), []

        return self._call(context, "ImportCometbftState", build, admin_pb2.ImportCometbftStateResponse)

    def ExportCometbftState(
        self, request: admin_pb2.ExportCometbftStateRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ExportCometbftStateResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ExportCometbftStateResponse, list[Outcome]]:
            public_key = bytes(request.public_key)
            key = self._chain_and_key(request.chain_id, public_key)
            self._authorize(client, Operation.PROTECTION_EXPORT, key)
            document = self.service.store.export_cometbft_state(request.chain_id, public_key)
            return (
                admin_pb2.ExportCometbftStateResponse(
                    status=admin_pb2.RESPONSE_STATUS_OK, state_json=json.dumps(document, indent=1).encode()
                ),
                [],
            )

        return self._call(context, "ExportCometbftState", build, admin_pb2.ExportCometbftStateResponse)


# --- Status ---------------------------------------------------------------------------------


class StatusServicer(_AdminBase, admin_pb2_grpc.StatusServicer):
    def __init__(
        self,
        service: SigningService,
        calls: CallContext,
        *,
        readiness: Readiness | None = None,
        store_backend: str | None = None,
        version: str = signer.__version__,
    ) -> None:
        super().__init__(service, calls, threading.Lock())
        self.readiness = readiness or default_readiness(service)
        self.store_backend = store_backend or _store_backend_name(service.store)
        self.version = version

    def GetStatus(
        self, request: admin_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetStatusResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.GetStatusResponse, list[Outcome]]:
            self._authorize(client, Operation.KEY_ADMIN)
            ready, reason = self.readiness()
            try:
                self.service.store.ping()
            except errors.SignerError as exc:
                store = admin_pb2.ProtectionStoreStatus(reachable=False, message=status.describe(exc))
            else:
                store = admin_pb2.ProtectionStoreStatus(reachable=True)
            store.backend = STORE_BACKENDS.get(self.store_backend, admin_pb2.STORE_BACKEND_UNSPECIFIED)
            return (
                admin_pb2.GetStatusResponse(
                    status=admin_pb2.RESPONSE_STATUS_OK,
                    message="" if ready else reason,
                    version=self.version,
                    network=self.service.network.name,
                    ready=ready,
                    keys_loaded=_scheme_counts(self.service.list_keys()),
                    key_module=MODULE_KINDS.get(self.service.keys.kind, admin_pb2.KEY_MODULE_KIND_UNSPECIFIED),
                    protection_store=store,
                ),
                [],
            )

        return self._call(context, "GetStatus", build, admin_pb2.GetStatusResponse)


# --- registration ---------------------------------------------------------------------------


def admin_servicers(
    service: SigningService,
    calls: CallContext,
    *,
    readiness: Readiness | None = None,
    store_backend: str | None = None,
    version: str = signer.__version__,
    import_workers: int | None = None,
) -> tuple[tuple[Callable[[Any, grpc.Server], None], object, str], ...]:
    """The three admin servicers as ``GrpcServer(extra_servicers=...)`` wants them:
    (add_XServicer_to_server, servicer, full service name), so that each is registered, listed in
    reflection and reported by gRPC health checking."""
    lock = threading.Lock()
    return (
        (
            admin_pb2_grpc.add_KeyAdminServicer_to_server,
            KeyAdminServicer(service, calls, lock, import_workers=import_workers),
            SERVICE_NAMES[0],
        ),
        (
            admin_pb2_grpc.add_ProtectionAdminServicer_to_server,
            ProtectionAdminServicer(service, calls, lock),
            SERVICE_NAMES[1],
        ),
        (
            admin_pb2_grpc.add_StatusServicer_to_server,
            StatusServicer(service, calls, readiness=readiness, store_backend=store_backend, version=version),
            SERVICE_NAMES[2],
        ),
    )
