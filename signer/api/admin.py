"""Servicers of our own admin API (proto/signer/admin/v1): KeyAdmin, ProtectionAdmin, Approvals, Status.

They translate a request into one call on the key-admin core (``signer.keyadmin``, where every rule
lives: who may, limits, the order of an import and of a deletion) and its answer back. Only what the
wire looks like is decided here:

* The operator and one-time code of a call come from its metadata (``x-signer-operator``,
  ``x-signer-otp``) and go to the core with every call but GetStatus; the core checks them
  (``signer.totp``, ``signer.approval``).
* A refused caller (AccessDenied, a refused code or approval included) ends the call with gRPC
  PERMISSION_DENIED, a locked-out one (RateLimited) with RESOURCE_EXHAUSTED (``status.abort``); the
  core changed nothing.
* An operation that waits for a second operator answers RESPONSE_STATUS_PENDING with its
  PendingOperation; the Approvals call of its kind answers what the operation itself answers.
* Any other refusal is answered in the response with gRPC status OK: ``status`` is
  RESPONSE_STATUS_REFUSED (the caller can fix it: malformed JSON, a document for another network,
  wrong password count, bad wallet name...) or RESPONSE_STATUS_FAILED (a backend failed; a retry may
  succeed), as ``status.admin_status`` maps the error tree, and ``message`` says why. Per-item
  problems are ItemResults with ITEM_STATUS_ERROR; the response is then PARTIAL (some items refused)
  or REFUSED (all). DUPLICATE, NOT_FOUND and NOT_ACTIVE are answers, not refusals.
* An unexpected exception is reported by its type name only (its text may hold input).
* Documents that can outgrow one gRPC message (DeleteKeys' history, ExportInterchange) are answered
  as a server stream of chunks (``DOCUMENT_CHUNK_BYTES``; see the proto's conventions): the first
  message is the whole answer with the document cut to its first chunk and ``*_size`` set, the rest
  carry one chunk each. ``read_document`` joins them on the client side.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import grpc

import signer
from signer import errors
from signer.api import status
from signer.api._proto.signer.admin.v1 import admin_pb2, admin_pb2_grpc
from signer.api.context import CallContext, done
from signer.keyadmin import (
    DEFAULT_GENERATE_WALLET,
    DEFAULT_WALLET,
    ApprovalKind,
    CometbftImport,
    Deletion,
    ImportReport,
    ImportResult,
    ImportStatus,
    KeyAdmin,
    KeyResult,
    KeyStatus,
    OperatorCode,
    PendingOperation,
    ProtectionAdmin,
    keystore_documents,
)
from signer.service import Outcome
from signer.types import ClientIdentity, KeyInfo, Scheme

log = logging.getLogger("signer.admin")

_Resp = TypeVar("_Resp")
_Chunked = TypeVar("_Chunked", admin_pb2.DeleteKeysResponse, admin_pb2.ExportInterchangeResponse)

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
IMPORT_STATUSES: dict[ImportStatus, admin_pb2.ItemStatus] = {
    ImportStatus.IMPORTED: admin_pb2.ITEM_STATUS_IMPORTED,
    ImportStatus.DUPLICATE: admin_pb2.ITEM_STATUS_DUPLICATE,
}
"""Every other import status is ITEM_STATUS_ERROR."""
KEY_STATUSES: dict[KeyStatus, admin_pb2.ItemStatus] = {
    KeyStatus.GENERATED: admin_pb2.ITEM_STATUS_GENERATED,
    KeyStatus.DELETED: admin_pb2.ITEM_STATUS_DELETED,
    KeyStatus.NOT_ACTIVE: admin_pb2.ITEM_STATUS_NOT_ACTIVE,
    KeyStatus.NOT_FOUND: admin_pb2.ITEM_STATUS_NOT_FOUND,
    KeyStatus.ERROR: admin_pb2.ITEM_STATUS_ERROR,
}

SERVICE_NAMES: tuple[str, ...] = tuple(
    admin_pb2.DESCRIPTOR.services_by_name[name].full_name
    for name in ("KeyAdmin", "ProtectionAdmin", "Status", "Approvals")
)
OPERATOR_METADATA = "x-signer-operator"
"""Call metadata: the operator acting (one of the client's ``[[clients]]`` operators)."""
OTP_METADATA = "x-signer-otp"
"""Call metadata: that operator's current one-time code."""
PENDING_KINDS: dict[ApprovalKind, admin_pb2.PendingKind] = {
    ApprovalKind.DELETE_KEYS: admin_pb2.PENDING_KIND_DELETE_KEYS,
    ApprovalKind.IMPORT_KEYSTORES: admin_pb2.PENDING_KIND_IMPORT_KEYSTORES,
    ApprovalKind.IMPORT_INTERCHANGE: admin_pb2.PENDING_KIND_IMPORT_INTERCHANGE,
    ApprovalKind.IMPORT_COMETBFT_STATE: admin_pb2.PENDING_KIND_IMPORT_COMETBFT_STATE,
}
APPROVE_METHODS: dict[ApprovalKind, str] = {
    ApprovalKind.DELETE_KEYS: "ApproveDeleteKeys",
    ApprovalKind.IMPORT_KEYSTORES: "ApproveImportKeystores",
    ApprovalKind.IMPORT_INTERCHANGE: "ApproveImportInterchange",
    ApprovalKind.IMPORT_COMETBFT_STATE: "ApproveImportCometbftState",
}


# --- translation --------------------------------------------------------------------------------


def _scheme_of(request_scheme: int, *, default: Scheme | None) -> Scheme | None:
    if request_scheme == admin_pb2.KEY_SCHEME_UNSPECIFIED:
        return default
    scheme = PROTO_TO_SCHEME.get(int(request_scheme))
    if scheme is None:
        raise errors.MalformedRequest(f"unknown key scheme {int(request_scheme)}")
    return scheme


def _scheme_counts(keys: Sequence[KeyInfo]) -> list[admin_pb2.SchemeCount]:
    return [
        admin_pb2.SchemeCount(scheme=proto, count=sum(1 for k in keys if k.scheme == scheme))
        for scheme, proto in SCHEME_TO_PROTO.items()
    ]


def _import_item(index: int, result: ImportResult) -> admin_pb2.ItemResult:
    status_ = IMPORT_STATUSES.get(result.status, admin_pb2.ITEM_STATUS_ERROR)
    message = result.describe() if status_ == admin_pb2.ITEM_STATUS_ERROR else result.message
    return admin_pb2.ItemResult(index=index, public_key=result.public_key or b"", status=status_, message=message)


def _key_item(index: int, result: KeyResult) -> admin_pb2.ItemResult:
    return admin_pb2.ItemResult(
        index=index, public_key=result.public_key, status=KEY_STATUSES[result.status], message=result.message
    )


def _batch_status(results: Sequence[admin_pb2.ItemResult]) -> tuple[admin_pb2.ResponseStatus, str]:
    refused = sum(1 for r in results if r.status == admin_pb2.ITEM_STATUS_ERROR)
    if refused == 0:
        return admin_pb2.RESPONSE_STATUS_OK, ""
    if refused == len(results):
        return admin_pb2.RESPONSE_STATUS_REFUSED, f"all {refused} items were refused; see the item results"
    return admin_pb2.RESPONSE_STATUS_PARTIAL, f"{refused} of {len(results)} items were refused; see the item results"


def operator_code(context: grpc.ServicerContext) -> OperatorCode | None:
    """The operator and code the call's metadata names; None when it names neither."""
    values = dict(context.invocation_metadata() or ())
    operator, code = values.get(OPERATOR_METADATA), values.get(OTP_METADATA)
    if operator is None and code is None:
        return None
    return OperatorCode(str(operator or ""), str(code or ""))


def pending_proto(pending: PendingOperation) -> admin_pb2.PendingOperation:
    return admin_pb2.PendingOperation(
        id=pending.id,
        kind=PENDING_KINDS[pending.kind],
        requested_by_operator=pending.operator,
        requested_by_client=pending.client,
        created_unix_s=int(pending.created_s),
        expires_unix_s=int(pending.expires_s),
        public_keys=list(pending.public_keys),
        document_sha256=pending.document_sha256,
        document_size=pending.document_size,
        keystores=pending.keystores,
        chain_id=pending.chain_id,
        summary=pending.summary,
    )


def _pending_message(pending: PendingOperation) -> str:
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pending.expires_s))
    return (
        f"nothing done yet: {pending.kind.value} waits for a second operator's approval "
        f"(Approvals/{APPROVE_METHODS[pending.kind]} with id {pending.id}, before {until})"
    )


def _pending_outcome(pending: PendingOperation) -> list[Outcome]:
    """A pending call reports no item outcome: nothing was done yet (the gate audited the request)."""
    return []


def _deletion_response(deletion: Deletion) -> tuple[admin_pb2.DeleteKeysResponse, list[Outcome]]:
    items = [_key_item(n, r) for n, r in enumerate(deletion.results)]
    code, message = _batch_status(items)
    history = _json(deletion.slashing_protection) if deletion.returns_history else b""
    response = admin_pb2.DeleteKeysResponse(status=code, message=message, results=items, slashing_protection=history)
    return response, [done(r.error) for r in deletion.results]


def _import_response(results: Sequence[ImportResult]) -> tuple[admin_pb2.ImportKeystoresResponse, list[Outcome]]:
    items = [_import_item(n, r) for n, r in enumerate(results)]
    code, message = _batch_status(items)
    outcomes = [done(errors.KeystoreError(r.describe()) if r.refused else None) for r in results]
    return admin_pb2.ImportKeystoresResponse(status=code, message=message, results=items), outcomes


def _interchange_response(report: ImportReport) -> admin_pb2.ImportInterchangeResponse:
    return admin_pb2.ImportInterchangeResponse(
        status=admin_pb2.RESPONSE_STATUS_OK,
        validators=report.validators,
        blocks_imported=report.blocks_imported,
        attestations_imported=report.attestations_imported,
        blocks_skipped=report.blocks_skipped,
        attestations_skipped=report.attestations_skipped,
    )


def _cometbft_response(done: CometbftImport) -> admin_pb2.ImportCometbftStateResponse:
    return admin_pb2.ImportCometbftStateResponse(status=admin_pb2.RESPONSE_STATUS_OK)


def _json(document: object) -> bytes:
    return json.dumps(document, indent=1).encode()


def _who(client: ClientIdentity) -> str:
    """Who an admin import is recorded as, should it initialize the protection store."""
    return f"admin API client '{client.name}'"


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


class _Calls:
    """Runs one admin call: who is calling, the refusal → wire rules above, metrics and audit."""

    def __init__(self, calls: CallContext) -> None:
        self.calls = calls

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
        except (errors.AccessDenied, errors.RateLimited) as exc:
            log.warning("admin call denied", extra={"method": method, "client": client.name, "reason": exc.message})
            self.calls.report(context, method, [done(exc)], time.perf_counter() - started)
            status.abort(context, exc)
            raise  # not reached: abort raises
        except errors.SignerError as exc:
            log.info("admin call refused", extra={"method": method, "client": client.name, "reason": exc.message})
            response = refused(status=status.admin_status(exc), message=status.describe(exc))
            outcomes = [done(exc)]
        except Exception as exc:  # a bug: say which kind, never the details (they may hold input)
            log.error("admin call failed", extra={"method": method, "client": client.name, "error": type(exc).__name__})
            error = errors.InternalError(f"internal error ({type(exc).__name__})")
            response = refused(status=status.admin_status(error), message=status.describe(error))
            outcomes = [done(error)]
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


# --- KeyAdmin -----------------------------------------------------------------------------------


class KeyAdminServicer(_Calls, admin_pb2_grpc.KeyAdminServicer):
    def __init__(self, admin: KeyAdmin, calls: CallContext) -> None:
        super().__init__(calls)
        self.admin = admin

    def ListKeys(self, request: admin_pb2.ListKeysRequest, context: grpc.ServicerContext) -> admin_pb2.ListKeysResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ListKeysResponse, list[Outcome]]:
            keys = self.admin.list_keys(client, _scheme_of(request.scheme, default=None), code=operator_code(context))
            kind = MODULE_KINDS.get(self.admin.module.kind, admin_pb2.KEY_MODULE_KIND_UNSPECIFIED)
            listed = [
                admin_pb2.KeyInfo(
                    public_key=k.public_key, scheme=SCHEME_TO_PROTO[k.scheme], account=k.name, module=kind
                )
                for k in keys
            ]
            return admin_pb2.ListKeysResponse(status=admin_pb2.RESPONSE_STATUS_OK, keys=listed), []

        return self._call(context, "ListKeys", build, admin_pb2.ListKeysResponse)

    def ImportKeystores(
        self, request: admin_pb2.ImportKeystoresRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ImportKeystoresResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ImportKeystoresResponse, list[Outcome]]:
            results = self.admin.import_keystores(
                client,
                keystore_documents(list(request.keystores), list(request.passwords)),
                wallet=request.wallet or DEFAULT_WALLET,
                slashing_protection=bytes(request.slashing_protection),
                who=_who(client),
                code=operator_code(context),
            )
            if isinstance(results, PendingOperation):
                return admin_pb2.ImportKeystoresResponse(
                    status=admin_pb2.RESPONSE_STATUS_PENDING,
                    message=_pending_message(results),
                    pending=pending_proto(results),
                ), _pending_outcome(results)
            return _import_response(results)

        return self._call(context, "ImportKeystores", build, admin_pb2.ImportKeystoresResponse)

    def GenerateKeys(
        self, request: admin_pb2.GenerateKeysRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GenerateKeysResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.GenerateKeysResponse, list[Outcome]]:
            scheme = _scheme_of(request.scheme, default=Scheme.BLS) or Scheme.BLS
            results = self.admin.generate(
                client,
                int(request.count),
                scheme,
                request.wallet or DEFAULT_GENERATE_WALLET,
                code=operator_code(context),
            )
            items = [_key_item(n, r) for n, r in enumerate(results)]
            code, message = _batch_status(items)
            outcomes = [done(r.error) for r in results]
            return admin_pb2.GenerateKeysResponse(status=code, message=message, results=items), outcomes

        return self._call(context, "GenerateKeys", build, admin_pb2.GenerateKeysResponse)

    def DeleteKeys(
        self, request: admin_pb2.DeleteKeysRequest, context: grpc.ServicerContext
    ) -> Iterator[admin_pb2.DeleteKeysResponse]:
        def build(client: ClientIdentity) -> tuple[admin_pb2.DeleteKeysResponse, list[Outcome]]:
            deletion = self.admin.delete(client, [bytes(pk) for pk in request.public_keys], code=operator_code(context))
            if isinstance(deletion, PendingOperation):
                return admin_pb2.DeleteKeysResponse(
                    status=admin_pb2.RESPONSE_STATUS_PENDING,
                    message=_pending_message(deletion),
                    pending=pending_proto(deletion),
                ), _pending_outcome(deletion)
            return _deletion_response(deletion)

        return self._stream(context, "DeleteKeys", build, admin_pb2.DeleteKeysResponse)

    def ReloadKeys(
        self, request: admin_pb2.ReloadKeysRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ReloadKeysResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ReloadKeysResponse, list[Outcome]]:
            keys = self.admin.reload(client, code=operator_code(context))
            return admin_pb2.ReloadKeysResponse(
                status=admin_pb2.RESPONSE_STATUS_OK, keys_loaded=_scheme_counts(keys)
            ), []

        return self._call(context, "ReloadKeys", build, admin_pb2.ReloadKeysResponse)


# --- ProtectionAdmin ----------------------------------------------------------------------------


class ProtectionAdminServicer(_Calls, admin_pb2_grpc.ProtectionAdminServicer):
    def __init__(self, history: ProtectionAdmin, calls: CallContext) -> None:
        super().__init__(calls)
        self.history = history

    def ImportInterchange(
        self, request: admin_pb2.ImportInterchangeRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ImportInterchangeResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ImportInterchangeResponse, list[Outcome]]:
            report = self.history.import_interchange(
                client, bytes(request.interchange_json), who=_who(client), code=operator_code(context)
            )
            if isinstance(report, PendingOperation):
                return admin_pb2.ImportInterchangeResponse(
                    status=admin_pb2.RESPONSE_STATUS_PENDING,
                    message=_pending_message(report),
                    pending=pending_proto(report),
                ), _pending_outcome(report)
            return _interchange_response(report), []

        return self._call(context, "ImportInterchange", build, admin_pb2.ImportInterchangeResponse)

    def ExportInterchange(
        self, request: admin_pb2.ExportInterchangeRequest, context: grpc.ServicerContext
    ) -> Iterator[admin_pb2.ExportInterchangeResponse]:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ExportInterchangeResponse, list[Outcome]]:
            document = self.history.export_interchange(
                client, [bytes(pk) for pk in request.public_keys], code=operator_code(context)
            )
            return (
                admin_pb2.ExportInterchangeResponse(
                    status=admin_pb2.RESPONSE_STATUS_OK, interchange_json=_json(document)
                ),
                [],
            )

        return self._stream(context, "ExportInterchange", build, admin_pb2.ExportInterchangeResponse)

    def ImportCometbftState(
        self, request: admin_pb2.ImportCometbftStateRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ImportCometbftStateResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ImportCometbftStateResponse, list[Outcome]]:
            done = self.history.import_cometbft_state(
                client,
                request.chain_id,
                bytes(request.public_key),
                bytes(request.state_json),
                who=_who(client),
                code=operator_code(context),
            )
            if isinstance(done, PendingOperation):
                return admin_pb2.ImportCometbftStateResponse(
                    status=admin_pb2.RESPONSE_STATUS_PENDING,
                    message=_pending_message(done),
                    pending=pending_proto(done),
                ), _pending_outcome(done)
            return _cometbft_response(done), []

        return self._call(context, "ImportCometbftState", build, admin_pb2.ImportCometbftStateResponse)

    def ExportCometbftState(
        self, request: admin_pb2.ExportCometbftStateRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ExportCometbftStateResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ExportCometbftStateResponse, list[Outcome]]:
            document = self.history.export_cometbft_state(
                client, request.chain_id, bytes(request.public_key), code=operator_code(context)
            )
            return (
                admin_pb2.ExportCometbftStateResponse(status=admin_pb2.RESPONSE_STATUS_OK, state_json=_json(document)),
                [],
            )

        return self._call(context, "ExportCometbftState", build, admin_pb2.ExportCometbftStateResponse)


# --- Approvals ----------------------------------------------------------------------------------


class ApprovalsServicer(_Calls, admin_pb2_grpc.ApprovalsServicer):
    """Two-person approval: list what waits, and approve one operation of a kind (it runs then)."""

    def __init__(self, admin: KeyAdmin, history: ProtectionAdmin, calls: CallContext) -> None:
        super().__init__(calls)
        self.admin = admin
        self.history = history

    def ListPending(
        self, request: admin_pb2.ListPendingRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListPendingResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ListPendingResponse, list[Outcome]]:
            waiting = self.admin.pending(client, code=operator_code(context))
            return admin_pb2.ListPendingResponse(
                status=admin_pb2.RESPONSE_STATUS_OK, pending=[pending_proto(p) for p in waiting]
            ), []

        return self._call(context, "ListPending", build, admin_pb2.ListPendingResponse)

    def ApproveDeleteKeys(
        self, request: admin_pb2.ApproveRequest, context: grpc.ServicerContext
    ) -> Iterator[admin_pb2.DeleteKeysResponse]:
        def build(client: ClientIdentity) -> tuple[admin_pb2.DeleteKeysResponse, list[Outcome]]:
            return _deletion_response(self.admin.approve_delete(client, request.id, code=operator_code(context)))

        return self._stream(context, "ApproveDeleteKeys", build, admin_pb2.DeleteKeysResponse)

    def ApproveImportKeystores(
        self, request: admin_pb2.ApproveRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ImportKeystoresResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ImportKeystoresResponse, list[Outcome]]:
            return _import_response(
                self.admin.approve_import_keystores(client, request.id, who=_who(client), code=operator_code(context))
            )

        return self._call(context, "ApproveImportKeystores", build, admin_pb2.ImportKeystoresResponse)

    def ApproveImportInterchange(
        self, request: admin_pb2.ApproveRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ImportInterchangeResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ImportInterchangeResponse, list[Outcome]]:
            report = self.history.approve_import_interchange(
                client, request.id, who=_who(client), code=operator_code(context)
            )
            return _interchange_response(report), []

        return self._call(context, "ApproveImportInterchange", build, admin_pb2.ImportInterchangeResponse)

    def ApproveImportCometbftState(
        self, request: admin_pb2.ApproveRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ImportCometbftStateResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.ImportCometbftStateResponse, list[Outcome]]:
            done = self.history.approve_import_cometbft_state(
                client, request.id, who=_who(client), code=operator_code(context)
            )
            return _cometbft_response(done), []

        return self._call(context, "ApproveImportCometbftState", build, admin_pb2.ImportCometbftStateResponse)


# --- Status -------------------------------------------------------------------------------------


class StatusServicer(_Calls, admin_pb2_grpc.StatusServicer):
    def __init__(self, admin: KeyAdmin, calls: CallContext, *, network: str, version: str) -> None:
        super().__init__(calls)
        self.admin = admin
        self.network = network
        self.version = version

    def GetStatus(
        self, request: admin_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetStatusResponse:
        def build(client: ClientIdentity) -> tuple[admin_pb2.GetStatusResponse, list[Outcome]]:
            now = self.admin.status(client)
            problem = now.store_problem
            store = admin_pb2.ProtectionStoreStatus(
                backend=STORE_BACKENDS.get(now.store_backend, admin_pb2.STORE_BACKEND_UNSPECIFIED),
                reachable=problem is None,
                message="" if problem is None else status.describe(problem),
            )
            response = admin_pb2.GetStatusResponse(
                status=admin_pb2.RESPONSE_STATUS_OK,
                message="" if now.ready else now.reason,
                version=self.version,
                network=self.network,
                ready=now.ready,
                keys_loaded=_scheme_counts(now.keys),
                key_module=MODULE_KINDS.get(now.module_kind, admin_pb2.KEY_MODULE_KIND_UNSPECIFIED),
                protection_store=store,
            )
            return response, []

        return self._call(context, "GetStatus", build, admin_pb2.GetStatusResponse)


# --- registration -------------------------------------------------------------------------------


def admin_servicers(
    admin: KeyAdmin, calls: CallContext, *, network: str, version: str = signer.__version__
) -> tuple[tuple[Callable[[Any, grpc.Server], None], object, str], ...]:
    """The four admin servicers as ``GrpcServer(extra_servicers=...)`` wants them:
    (add_XServicer_to_server, servicer, full service name), so that each is registered, listed in
    reflection and reported by gRPC health checking. ``admin`` needs its protection store."""
    if admin.protection is None:
        raise errors.ConfigError("the admin API needs the key admin's slashing-protection store")
    return (
        (admin_pb2_grpc.add_KeyAdminServicer_to_server, KeyAdminServicer(admin, calls), SERVICE_NAMES[0]),
        (
            admin_pb2_grpc.add_ProtectionAdminServicer_to_server,
            ProtectionAdminServicer(admin.protection, calls),
            SERVICE_NAMES[1],
        ),
        (
            admin_pb2_grpc.add_StatusServicer_to_server,
            StatusServicer(admin, calls, network=network, version=version),
            SERVICE_NAMES[2],
        ),
        (
            admin_pb2_grpc.add_ApprovalsServicer_to_server,
            ApprovalsServicer(admin, admin.protection, calls),
            SERVICE_NAMES[3],
        ),
    )
