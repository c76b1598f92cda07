"""The Keymanager API (ethereum/keymanager-APIs, ``apis/local_keystores.yaml``) on the REST listener:
``GET``, ``POST`` and ``DELETE /eth/v1/keystores``, and the two approvals of its destructive calls.

Translation only, like the gRPC admin servicers (``signer.api.admin``): each call becomes one call of
the key-admin core (``signer.keyadmin``, where every rule lives: who may, limits, the order of an
import and of a deletion, the second factor, approvals) and its answer is put back in the
Keymanager API's words. Only what the wire looks like is decided here:

* Authentication first: ``Authorization: Bearer TOKEN`` (``signer.api.bearer``): none or malformed
  is 401, a wrong token 403; nothing else is looked at before. Then the caller's identity, as on
  gRPC (``identify``: the client certificate's CN and SANs under TLS, ``local`` on plaintext
  loopback), whose ``[[clients]]`` entry needs ``key_admin`` (and ``protection_import`` for an
  import that carries ``slashing_protection``), exactly as for the admin API.
* The second factor (issue 16): the operator and one-time code travel as the headers
  ``X-Signer-Operator`` and ``X-Signer-Otp`` (when ``admin.second_factor`` is on; the core checks
  them, once per call, codes are single-use).
* ``GET``: the BLS keys, ``{"data": [{"validating_pubkey", "readonly": false}]}`` (no derivation path:
  the module does not keep one).
* ``POST``: ``keystores[i]`` (a JSON-encoded EIP-2335 keystore) with ``passwords[i]``; the lists must
  be as long as each other (400 otherwise); empty lists answer ``{"data": []}``. The optional
  ``slashing_protection`` (a JSON-encoded EIP-3076 document) is checked whole first (400 if it is
  refused; nothing is imported), and only the history of the keys actually imported is imported,
  before they can sign. One ``{"status": "imported"|"duplicate"|"error", "message"}`` per keystore.
  Keys are sealed into the configured module (emulated or PKCS#11), never written out as keystores.
* ``DELETE``: ``{"pubkeys": [...]}``; the keys stop signing first, then their history is exported
  and they are deleted; the answer is one ``deleted``/``not_active``/``not_found``/``error`` per key
  and ``slashing_protection`` (the EIP-3076 document of the keys deleted or not active; always
  present, its ``data`` empty when there are none). The history is retained: a repeated delete
  answers ``not_active`` with the same history. Never 404.
* A call that waits for a second operator (``admin.require_approval``) answers 202 with
  ``{"message", "pending": {...}}``: nothing is done yet. A second operator approves it with
  ``POST /signer/v1/approvals/{kind}/{id}`` (``kind`` = ``delete_keys`` or ``import_keystores``; the
  same bearer token, their own operator headers), which answers what the Keymanager call would
  have answered (its body, 200), or with the gRPC Approvals service (same pending operations).
* Every refusal of a whole call is JSON ``{"message": ...}`` naming the problem, with the HTTP
  status of ``signer.api.status.http_status`` (429 with ``Retry-After``); an unexpected exception is
  a 500 naming its type only (its text may hold input).
* Each call is reported once: its outcome to the request metrics (``method`` one of ``METHODS``),
  one audit line per keystore or key (or one for a refused call).

The core's calls block (keystore decryption, the store, the module): they run in the thread pool,
never on the event loop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from signer import errors
from signer.api import status
from signer.api.bearer import BearerToken
from signer.jsondoc import load_json
from signer.keyadmin import (
    ApprovalKind,
    Deletion,
    ImportResult,
    ImportStatus,
    KeyAdmin,
    KeyStatus,
    OperatorCode,
    PendingOperation,
    keystore_documents,
)
from signer.service import Outcome
from signer.types import (
    LOCAL_CLIENT,
    AuditEvent,
    AuditSink,
    ClientIdentity,
    KeyInfo,
    Monitor,
    NullAudit,
    NullMonitor,
    Scheme,
)

log = logging.getLogger("signer.keymanager")

KEYSTORES_PATH = "/eth/v1/keystores"
APPROVALS_PATH = "/signer/v1/approvals"
OPERATOR_HEADER = "x-signer-operator"
"""The operator acting (one of the client's ``[[clients]]`` operators)."""
OTP_HEADER = "x-signer-otp"
"""That operator's current one-time code."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""A request body larger than this is refused unread (400)."""

METHODS: tuple[str, ...] = (
    "KeymanagerListKeys",
    "KeymanagerImportKeystores",
    "KeymanagerDeleteKeys",
    "KeymanagerApproveDeleteKeys",
    "KeymanagerApproveImportKeystores",
)
"""The ``method`` label values of the Keymanager calls (metrics and audit)."""

IMPORT_STATUSES: dict[ImportStatus, str] = {ImportStatus.IMPORTED: "imported", ImportStatus.DUPLICATE: "duplicate"}
"""Every other import status is "error"."""
DELETE_STATUSES: dict[KeyStatus, str] = {
    KeyStatus.DELETED: "deleted",
    KeyStatus.NOT_ACTIVE: "not_active",
    KeyStatus.NOT_FOUND: "not_found",
    KeyStatus.ERROR: "error",
}
APPROVABLE: dict[str, ApprovalKind] = {
    ApprovalKind.DELETE_KEYS.value: ApprovalKind.DELETE_KEYS,
    ApprovalKind.IMPORT_KEYSTORES.value: ApprovalKind.IMPORT_KEYSTORES,
}
"""The pending operations a Keymanager call can leave, approvable over HTTP."""

Identify = Callable[[Request], ClientIdentity]


def _local(request: Request) -> ClientIdentity:
    return LOCAL_CLIENT


# --- request bodies (validated at the edge) -----------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class ImportBody(_Body):
    keystores: list[str]
    passwords: list[str]
    slashing_protection: str | None = None


class DeleteBody(_Body):
    pubkeys: list[str]


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        path = ".".join(str(p) for p in err["loc"]) or "<body>"
        parts.append(f"{path}: {err['msg']}")
    return "; ".join(parts)


def _parse(model: type[_Body], body: bytes, what: str) -> Any:
    document = load_json(body, what=what, max_bytes=MAX_BODY_BYTES, error=errors.MalformedRequest)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise errors.MalformedRequest(f"malformed {what}: {_describe(exc)}") from None


def parse_import(body: bytes) -> ImportBody:
    """An import request; MalformedRequest naming what is wrong (lists of unequal length included)."""
    request: ImportBody = _parse(ImportBody, body, "keystore import request")
    if len(request.passwords) != len(request.keystores):
        raise errors.MalformedRequest(
            f"malformed keystore import request: {len(request.passwords)} passwords for "
            f"{len(request.keystores)} keystores; passwords[i] must unlock keystores[i]"
        )
    return request


def parse_delete(body: bytes) -> list[bytes]:
    """The public keys of a delete request; MalformedRequest for one that is not 0x-hex."""
    request: DeleteBody = _parse(DeleteBody, body, "key delete request")
    keys: list[bytes] = []
    for n, text in enumerate(request.pubkeys):
        try:
            keys.append(bytes.fromhex(text.removeprefix("0x").removeprefix("0X")))
        except ValueError:
            raise errors.MalformedRequest(f"malformed key delete request: pubkeys.{n} is not 0x-hex") from None
    return keys


def operator_code(request: Request) -> OperatorCode | None:
    """The operator and code the request's headers name; None when they name neither."""
    operator, code = request.headers.get(OPERATOR_HEADER), request.headers.get(OTP_HEADER)
    if operator is None and code is None:
        return None
    return OperatorCode(operator or "", code or "")


# --- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What one call answers: HTTP status, JSON body, and the outcomes it reports."""

    status_code: int
    body: dict[str, Any]
    outcomes: list[Outcome]


def _key(public_key: bytes | None, name: str | None) -> KeyInfo | None:
    """The key an audit line names (by public key; the account when the module has one)."""
    if not public_key:
        return None
    return KeyInfo(handle="", name=name or "", scheme=Scheme.BLS, public_key=public_key)


def import_answer(results: Sequence[ImportResult]) -> Answer:
    data = []
    outcomes = []
    for result in results:
        word = IMPORT_STATUSES.get(result.status, "error")
        data.append({"status": word, "message": result.describe() if word == "error" else result.message})
        error = errors.KeystoreError(result.describe()) if result.refused else None
        outcomes.append(Outcome(error=error, key=_key(result.public_key, result.name)))
    return Answer(200, {"data": data}, outcomes)


def delete_answer(deletion: Deletion) -> Answer:
    data = [{"status": DELETE_STATUSES[r.status], "message": r.message} for r in deletion.results]
    body = {"data": data, "slashing_protection": json.dumps(deletion.slashing_protection)}
    return Answer(200, body, [Outcome(error=r.error, key=_key(r.public_key, r.name)) for r in deletion.results])


def pending_answer(pending: PendingOperation) -> Answer:
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pending.expires_s))
    path = f"{APPROVALS_PATH}/{pending.kind.value}/{pending.id}"
    message = (
        f"nothing done yet: {pending.kind.value} waits for a second operator's approval before {until} "
        f"(POST {path} with that operator's headers, or the gRPC Approvals service with id {pending.id})"
    )
    body = {
        "message": message,
        "pending": {
            "id": pending.id,
            "kind": pending.kind.value,
            "requested_by_operator": pending.operator,
            "requested_by_client": pending.client,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pending.created_s)),
            "expires": until,
            "public_keys": ["0x" + pk.hex() for pk in pending.public_keys],
            "document_sha256": pending.document_sha256.hex(),
            "keystores": pending.keystores,
            "summary": pending.summary,
            "approve": path,
        },
    }
    return Answer(202, body, [])


def error_response(error: errors.SignerError) -> JSONResponse:
    """A refused call: ``{"message": ...}`` with the status of the one error table."""
    headers = {}
    if isinstance(error, errors.RateLimited):
        headers["Retry-After"] = str(max(1, round(error.retry_after_s + 0.499)))
    return JSONResponse({"message": status.describe(error)}, status_code=status.http_status(error), headers=headers)


# --- the routes ---------------------------------------------------------------------------------


class KeymanagerApi:
    """The routes of the module docstring, on one key-admin core."""

    def __init__(
        self,
        admin: KeyAdmin,
        token: BearerToken,
        *,
        identify: Identify = _local,
        audit: AuditSink | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        self.admin = admin
        self.token = token
        self.identify = identify
        self.audit: AuditSink = audit or NullAudit()
        self.monitor: Monitor = monitor or NullMonitor()

    def routes(self) -> list[BaseRoute]:
        return [
            Route(KEYSTORES_PATH, self.keystores, methods=["GET", "POST", "DELETE"]),
            Route(APPROVALS_PATH + "/{kind}/{id}", self.approve, methods=["POST"]),
        ]

    async def keystores(self, request: Request) -> Response:
        if request.method == "GET":
            return await self._call(request, "KeymanagerListKeys", self._list, read_body=False)
        if request.method == "POST":
            return await self._call(request, "KeymanagerImportKeystores", self._import)
        return await self._call(request, "KeymanagerDeleteKeys", self._delete)

    async def approve(self, request: Request) -> Response:
        kind = APPROVABLE.get(request.path_params["kind"])
        if kind is ApprovalKind.DELETE_KEYS:
            return await self._call(request, "KeymanagerApproveDeleteKeys", self._approve_delete, read_body=False)
        if kind is ApprovalKind.IMPORT_KEYSTORES:
            return await self._call(request, "KeymanagerApproveImportKeystores", self._approve_import, read_body=False)
        return JSONResponse(
            {"message": f"no such approval: {APPROVALS_PATH}/{{kind}}/{{id}} takes kind {' or '.join(APPROVABLE)}"},
            status_code=404,
        )

    # the calls, on a worker thread

    def _list(self, client: ClientIdentity, code: OperatorCode | None, request: Request, body: bytes) -> Answer:
        keys = self.admin.list_keys(client, Scheme.BLS, code=code)
        data = [{"validating_pubkey": "0x" + k.public_key.hex(), "readonly": False} for k in keys]
        return Answer(200, {"data": data}, [])

    def _import(self, client: ClientIdentity, code: OperatorCode | None, request: Request, body: bytes) -> Answer:
        parsed = parse_import(body)
        if not parsed.keystores:
            return Answer(200, {"data": []}, [])
        results = self.admin.import_keystores(
            client,
            keystore_documents([k.encode() for k in parsed.keystores], parsed.passwords),
            slashing_protection=(parsed.slashing_protection or "").encode(),
            who=f"Keymanager API client '{client.name}'",
            code=code,
        )
        if isinstance(results, PendingOperation):
            return pending_answer(results)
        return import_answer(results)

    def _delete(self, client: ClientIdentity, code: OperatorCode | None, request: Request, body: bytes) -> Answer:
        deletion = self.admin.delete(client, parse_delete(body), code=code)
        if isinstance(deletion, PendingOperation):
            return pending_answer(deletion)
        return delete_answer(deletion)

    def _approve_delete(
        self, client: ClientIdentity, code: OperatorCode | None, request: Request, body: bytes
    ) -> Answer:
        return delete_answer(self.admin.approve_delete(client, request.path_params["id"], code=code))

    def _approve_import(
        self, client: ClientIdentity, code: OperatorCode | None, request: Request, body: bytes
    ) -> Answer:
        who = f"Keymanager API client '{client.name}'"
        return import_answer(self.admin.approve_import_keystores(client, request.path_params["id"], who=who, code=code))

    # one call: authentication, identity, the core on a thread, the answer, the report

    async def _call(
        self,
        request: Request,
        method: str,
        run: Callable[[ClientIdentity, OperatorCode | None, Request, bytes], Answer],
        *,
        read_body: bool = True,
    ) -> Response:
        started = time.perf_counter()
        client = LOCAL_CLIENT
        operator: str | None = None
        try:
            self.token.check(request.headers.get("authorization"))
            client = self.identify(request)
            code = operator_code(request)
            operator = code.operator if code is not None else None
            body = await self._body(request) if read_body else b""
            answer = await run_in_threadpool(run, client, code, request, body)
        except errors.SignerError as exc:
            level = logging.WARNING if isinstance(exc, errors.AccessDenied | errors.RateLimited) else logging.INFO
            log.log(
                level, "keymanager call refused", extra={"method": method, "client": client.name, "reason": exc.message}
            )
            self._report(client, method, operator, [Outcome(error=exc)], started)
            return error_response(exc)
        except Exception as exc:  # a bug: say which kind, never the details (they may hold input)
            log.error(
                "keymanager call failed", extra={"method": method, "client": client.name, "error": type(exc).__name__}
            )
            error = errors.InternalError(f"internal error ({type(exc).__name__})")
            self._report(client, method, operator, [Outcome(error=error)], started)
            return error_response(error)
        self._report(client, method, operator, answer.outcomes, started)
        return JSONResponse(answer.body, status_code=answer.status_code)

    @staticmethod
    async def _body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise errors.MalformedRequest(f"the request body is over {MAX_BODY_BYTES} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise errors.MalformedRequest(f"the request body is over {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _report(
        self, client: ClientIdentity, method: str, operator: str | None, outcomes: Sequence[Outcome], started: float
    ) -> None:
        duration_s = time.perf_counter() - started
        labels = [status.outcome_label(o.error) for o in outcomes]
        self.monitor.request_done(method, status.worst_outcome(labels), duration_s)
        for outcome, label in zip(outcomes, labels, strict=True):
            error = outcome.error
            self.audit.record(
                AuditEvent(
                    client=client.name,
                    method=method,
                    outcome=label,
                    operation="key_admin",
                    public_key=outcome.key.public_key if outcome.key is not None else None,
                    account=outcome.key.name if outcome.key is not None else None,
                    reason=status.describe(error) if error is not None else None,
                    duration_ms=round(duration_s * 1000, 3),
                    operator=operator,
                )
            )
