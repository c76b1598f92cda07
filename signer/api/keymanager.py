"""The Keymanager API (ethereum/keymanager-APIs, ``apis/local_keystores.yaml``) on the REST listener:
``GET``, ``POST`` and ``DELETE /eth/v1/keystores``, and the two approvals of its destructive calls.

Translation only, like the gRPC admin servicers (``signer.api.admin``): each call becomes one call of
the key-admin core (``signer.keyadmin``, where every rule lives: who may, limits, the order of an
import and of a deletion, the second factor, approvals) and its answer is put back in the
Keymanager API's words. Only what the wire looks like is decided here:

* The routes are mounted through the REST front's pipeline (``signer.api.rest.RestContext``): the
  caller's identity as on gRPC (the client certificate's CN and SANs under TLS, ``local`` on
  plaintext loopback; a TLS caller without a certificate is refused, 403), the rate limiter (429),
  the body bounded by ``server.max_message_bytes``, the worker pool (the core's calls block: keystore
  decryption, the store, the module), error -> HTTP status, the request metrics.
* Then the bearer token, before anything else is looked at: ``Authorization: Bearer TOKEN``
  (``signer.api.bearer``): none or malformed is 401, a wrong token 403. Then the caller's
  ``[[clients]]`` entry needs ``key_admin`` (and ``protection_import`` for an import that carries
  ``slashing_protection``), exactly as for the admin API.
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
  status of the one error table (``signer.api.status.http_status``; 429 with ``Retry-After``); an
  unexpected exception is a 500 that names the request id only (its text may hold input).
* Each call is reported once: its outcome to the request metrics (``method`` one of ``METHODS``),
  one audit line per keystore or key (or one for a refused call, the bearer token's refusals
  included; the token itself is never written anywhere).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.responses import Response
from starlette.routing import BaseRoute

from signer import errors
from signer.api.bearer import BearerToken
from signer.api.context import CallContext
from signer.api.rest import RestCall, RestContext, json_response
from signer.jsondoc import load_json
from signer.keyadmin import (
    Deletion,
    ImportResult,
    ImportStatus,
    KeyAdmin,
    KeyStatus,
    OperatorCode,
    PendingOperation,
    keystore_documents,
)
from signer.service import Outcome, Refused, Signed
from signer.types import ClientIdentity, KeyInfo, RequestOutcome, Scheme

log = logging.getLogger("signer.keymanager")

KEYSTORES_PATH = "/eth/v1/keystores"
APPROVALS_PATH = "/signer/v1/approvals"
OPERATOR_HEADER = "x-signer-operator"
"""The operator acting (one of the client's ``[[clients]]`` operators)."""
OTP_HEADER = "x-signer-otp"
"""That operator's current one-time code."""

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
    document = load_json(body, what=what, max_bytes=max(len(body), 1), error=errors.MalformedRequest)
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


def operator_code(headers: Mapping[str, str]) -> OperatorCode | None:
    """The operator and code the request's headers (lower-case names) carry; None when neither."""
    operator, code = headers.get(OPERATOR_HEADER), headers.get(OTP_HEADER)
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


def _item(error: errors.SignerError | None, key: KeyInfo | None) -> Outcome:
    """What one keystore or key of a call is reported as (audit, metrics): it signs nothing."""
    return Refused(error, key=key) if error is not None else Signed(b"", key=key)


def import_answer(results: Sequence[ImportResult]) -> Answer:
    data = []
    outcomes = []
    for result in results:
        word = IMPORT_STATUSES.get(result.status, "error")
        data.append({"status": word, "message": result.describe() if word == "error" else result.message})
        error = errors.KeystoreError(result.describe()) if result.refused else None
        outcomes.append(_item(error, _key(result.public_key, result.name)))
    return Answer(200, {"data": data}, outcomes)


def delete_answer(deletion: Deletion) -> Answer:
    data = [{"status": DELETE_STATUSES[r.status], "message": r.message} for r in deletion.results]
    body = {"data": data, "slashing_protection": json.dumps(deletion.slashing_protection)}
    return Answer(200, body, [_item(r.error, _key(r.public_key, r.name)) for r in deletion.results])


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


class KeymanagerApi:
    """The routes of the module docstring, on one key-admin core, mounted through the REST front's
    pipeline (``signer.api.rest.RestContext``: identity, rate limit, bounded body, worker pool,
    error -> HTTP status, request metrics)."""

    def __init__(self, rest: RestContext, calls: CallContext, admin: KeyAdmin, token: BearerToken) -> None:
        self.rest = rest
        self.calls = calls
        self.admin = admin
        self.token = token

    def routes(self) -> list[BaseRoute]:
        route = self.rest.route
        return [
            route(KEYSTORES_PATH, self._list, methods=["GET"], label=METHODS[0]),
            route(KEYSTORES_PATH, self._import, methods=["POST"], label=METHODS[1]),
            route(KEYSTORES_PATH, self._delete, methods=["DELETE"], label=METHODS[2]),
            route(f"{APPROVALS_PATH}/delete_keys/{{id}}", self._approve_delete, methods=["POST"], label=METHODS[3]),
            route(
                f"{APPROVALS_PATH}/import_keystores/{{id}}", self._approve_import, methods=["POST"], label=METHODS[4]
            ),
        ]

    # the handlers (on the REST front's worker pool)

    def _list(self, call: RestCall) -> Response:
        def run(client: ClientIdentity, code: OperatorCode | None) -> Answer:
            keys = self.admin.list_keys(client, Scheme.BLS, code=code)
            data = [{"validating_pubkey": "0x" + k.public_key.hex(), "readonly": False} for k in keys]
            return Answer(200, {"data": data}, [])

        return self._run(call, run)

    def _import(self, call: RestCall) -> Response:
        def run(client: ClientIdentity, code: OperatorCode | None) -> Answer:
            parsed = parse_import(call.body)
            if not parsed.keystores:
                return Answer(200, {"data": []}, [])
            results = self.admin.import_keystores(
                client,
                keystore_documents([k.encode() for k in parsed.keystores], parsed.passwords),
                slashing_protection=(parsed.slashing_protection or "").encode(),
                who=_who(client),
                code=code,
            )
            if isinstance(results, PendingOperation):
                return pending_answer(results)
            return import_answer(results)

        return self._run(call, run)

    def _delete(self, call: RestCall) -> Response:
        def run(client: ClientIdentity, code: OperatorCode | None) -> Answer:
            deletion = self.admin.delete(client, parse_delete(call.body), code=code)
            if isinstance(deletion, PendingOperation):
                return pending_answer(deletion)
            return delete_answer(deletion)

        return self._run(call, run)

    def _approve_delete(self, call: RestCall) -> Response:
        def run(client: ClientIdentity, code: OperatorCode | None) -> Answer:
            return delete_answer(self.admin.approve_delete(client, str(call.path_params["id"]), code=code))

        return self._run(call, run)

    def _approve_import(self, call: RestCall) -> Response:
        def run(client: ClientIdentity, code: OperatorCode | None) -> Answer:
            pending_id = str(call.path_params["id"])
            return import_answer(self.admin.approve_import_keystores(client, pending_id, who=_who(client), code=code))

        return self._run(call, run)

    def _run(self, call: RestCall, run: Callable[[ClientIdentity, OperatorCode | None], Answer]) -> Response:
        """The bearer token first, then the call; its outcomes to the audit log (a refusal too) and
        its outcome label to the request metrics. A refusal is raised on to the pipeline, which
        answers it with its HTTP status and ``{"message": ...}``."""
        started = time.perf_counter()
        client = call.client or ClientIdentity(name="anonymous")
        try:
            self.token.check(call.headers.get("authorization"))
            if call.client is None:  # pragma: no cover - the route needs a client (RestContext)
                raise errors.AccessDenied(
                    "the Keymanager API needs a client certificate (the TLS handshake carried none)"
                )
            answer = run(call.client, operator_code(call.headers))
        except errors.SignerError as exc:
            level = logging.WARNING if isinstance(exc, errors.AccessDenied | errors.RateLimited) else logging.INFO
            log.log(
                level,
                "keymanager call refused",
                extra={"method": call.method, "client": client.name, "reason": exc.message},
            )
            call.outcome = self._audit(call, client, [Refused(exc)], started)
            raise
        call.outcome = self._audit(call, client, answer.outcomes, started)
        return json_response(answer.body, answer.status_code)

    def _audit(
        self, call: RestCall, client: ClientIdentity, outcomes: Sequence[Outcome], started: float
    ) -> RequestOutcome:
        return self.calls.audit_outcomes(
            client.name, call.request_id, call.method, outcomes, time.perf_counter() - started
        )


def _who(client: ClientIdentity) -> str:
    """Who a Keymanager import is recorded as, should it initialize the protection store."""
    return f"Keymanager API client '{client.name}'"
