"""The Web3Signer remote-signing API (what Lighthouse, Teku, Prysm, Nimbus and Lodestar speak): a
route group of the REST front (``signer.api.rest``). It translates, the core decides.

``POST /api/v1/eth2/sign/{0x-pubkey}``: the JSON body is validated by ``signer.api.rest_models``,
``signer.eth2.remote_signing.prepare`` computes the signing root from the typed payload and OUR
network (checking ``fork_info`` and a client's ``signingRoot``), and the result goes to the same core
as the gRPC front, in ``_core_sign`` (the one place this front calls it: ``CallContext.sign``, the
batcher, which coalesces concurrent requests into one slashing-protection transaction):

* ATTESTATION -> an AttestationRequest, exactly as gRPC's SignBeaconAttestation;
* BLOCK / BLOCK_V2 -> a ProposalRequest (the block header), as SignBeaconProposal;
* every other type -> a GenericRequest (the object root under its domain), as Sign: the same
  permissions (``sign_generic``; VOLUNTARY_EXIT needs ``sign_voluntary_exit``, DEPOSIT
  ``sign_deposit``).

A share of a distributed account (or its composite key) is refused (``PartialSignatureOnly``, 400)
and not listed: its signature is partial, and these clients cannot combine partial signatures.

Answers: 200 with ``{"signature": "0x..."}`` when Accept allows JSON, the bare ``0x...`` as
text/plain otherwise; refusals from the one table (400, 403, 404, 412, 429, 503, 500).

The rest of the API: ``GET /api/v1/eth2/publicKeys`` (the BLS keys this client may sign with),
``GET /upcheck``, ``GET /healthcheck`` (per-check detail, 503 when a check is down),
``POST /reload`` and ``GET /reload`` (re-read the key module, ``key_admin``; the status of the last
reload), ``GET /api/v1/eth2/highWatermark`` (``{}``: this signer has no high watermark; its
protection refuses by each validator's history and lower bounds instead).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.responses import Response

from signer import errors
from signer.api.admin import OPERATOR_METADATA, OTP_METADATA
from signer.api.context import CallContext
from signer.api.rest import TEXT, RestCall, RestContext, RouteGroup, json_response
from signer.api.rest_models import parse_sign_request
from signer.eth2.networks import Network
from signer.eth2.remote_signing import Prepared, SignType, prepare
from signer.service import AttestationRequest, GenericRequest, Outcome, ProposalRequest, Refused, SigningService
from signer.totp import OperatorCode
from signer.types import ClientIdentity, KeyInfo, KeyRef, Operation, Scheme

SIGN_PATH = "/api/v1/eth2/sign/{identifier}"
_PUBKEY = re.compile(r"0x[0-9a-fA-F]{96}")
_SIGNING_OPERATIONS = (Operation.SIGN_ATTESTATION, Operation.SIGN_PROPOSAL, Operation.SIGN_GENERIC)
LABEL_PREFIX = "Web3Signer/"
"""Metrics and audit ``method`` labels of this API: ``Web3Signer/ATTESTATION``, ``Web3Signer/publicKeys`` ..."""

CoreRequest = AttestationRequest | ProposalRequest | GenericRequest


def public_key_of(identifier: str) -> bytes:
    """The path's ``0x``-hex BLS public key (48 bytes); MalformedRequest otherwise."""
    if not _PUBKEY.fullmatch(identifier):
        raise errors.MalformedRequest(
            f"the path names no BLS public key: {identifier[:120]!r} is not 0x followed by 96 hex digits"
        )
    return bytes.fromhex(identifier[2:])


def core_request(public_key: bytes, prepared: Prepared) -> CoreRequest:
    """What the core signs for a prepared Web3Signer request: the same domain types as gRPC's."""
    key = KeyRef(public_key=public_key)
    if prepared.attestation is not None:
        return AttestationRequest(key=key, domain=prepared.domain, data=prepared.attestation)
    if prepared.block_header is not None:
        return ProposalRequest(key=key, domain=prepared.domain, header=prepared.block_header)
    return GenericRequest(key=key, domain=prepared.domain, data=prepared.object_root)


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    status: str
    """"not_started", "completed" or "failed"."""
    at: float | None = None
    keys: int | None = None
    message: str | None = None


class Web3SignerApi:
    """The Web3Signer API's routes over the signing core (see the module doc)."""

    def __init__(
        self,
        rest: RestContext,
        service: SigningService,
        calls: CallContext,
        network: Network,
        *,
        readiness: Callable[[], tuple[bool, str]],
        health_checks: Callable[[], list[dict[str, object]]],
        reload_keys: Callable[[ClientIdentity, OperatorCode | None], list[KeyInfo]],
    ) -> None:
        self.rest = rest
        self.service = service
        self.calls = calls
        self.network = network
        self._readiness = readiness
        self._health_checks = health_checks
        self._reload_keys = reload_keys
        self._reload_lock = threading.Lock()
        self._reload = ReloadStatus("not_started")

    def routes(self) -> RouteGroup:
        r = self.rest.route
        return [
            r(SIGN_PATH, self.sign, methods=["POST"], label=LABEL_PREFIX + "sign"),
            r("/api/v1/eth2/publicKeys", self.public_keys, methods=["GET"], label=LABEL_PREFIX + "publicKeys"),
            r("/api/v1/eth2/highWatermark", self.high_watermark, methods=["GET"], label=LABEL_PREFIX + "highWatermark"),
            r(
                "/upcheck",
                self.upcheck,
                methods=["GET"],
                label=LABEL_PREFIX + "upcheck",
                needs_client=False,  # liveness: says nothing about keys or history
                rated=False,
                blocking=False,
            ),
            r("/healthcheck", self.healthcheck, methods=["GET"], label=LABEL_PREFIX + "healthcheck", rated=False),
            r("/reload", self.reload, methods=["POST"], label=LABEL_PREFIX + "reload"),
            r("/reload", self.reload_status, methods=["GET"], label=LABEL_PREFIX + "reloadStatus", rated=False),
        ]

    # --- signing ---------------------------------------------------------------------------------

    def _core_sign(self, client: ClientIdentity, request: CoreRequest) -> Outcome:
        """THE one place the REST front calls the signing core: ``CallContext.sign``, the batcher in
        front of the SigningService, exactly as the gRPC servicers sign."""
        return self.calls.sign(client, [request])[0]

    def sign(self, call: RestCall) -> Response:
        started = time.perf_counter()
        assert call.client is not None  # needs_client
        try:
            public_key = public_key_of(str(call.path_params.get("identifier", "")))
            if self.service.keyring.is_share(public_key):
                raise errors.PartialSignatureOnly(
                    f"0x{public_key.hex()} names a share of a distributed account: this signer's signature "
                    "would be partial; sign it through the eth2-signer-api with a combining client (Vouch)"
                )
            request = parse_sign_request(call.body)
            call.method = LABEL_PREFIX + request.sign_type.value
            prepared = prepare(self.network, request)
            outcome = self._core_sign(call.client, core_request(public_key, prepared))
        except errors.SignerError as exc:
            outcome = Refused(exc)
        self.calls.audit_outcomes(
            call.client.name, call.request_id, call.method, [outcome], time.perf_counter() - started
        )
        if outcome.error is not None:
            raise outcome.error
        if outcome.signature is None:  # pragma: no cover - the core answers a signature or an error
            raise errors.InternalError("the core returned neither a signature nor a refusal")
        signature = "0x" + outcome.signature.hex()
        if call.wants_json:
            return json_response({"signature": signature})
        return Response(signature, media_type=TEXT)

    # --- keys, health, reload ----------------------------------------------------------------------

    def public_keys(self, call: RestCall) -> Response:
        """The BLS keys this client may sign with (with any signing operation), as 0x-hex; shares of
        distributed accounts are not listed (their signatures are partial)."""
        assert call.client is not None
        client = call.client
        permits = self.service.authorizer.permits
        if not any(permits(client, op, None) for op in _SIGNING_OPERATIONS):
            ops = ", ".join(op.value for op in _SIGNING_OPERATIONS)
            raise errors.AccessDenied(f"client '{client.name}' may not list keys: it may do none of {ops}")
        keyring = self.service.keyring
        keys = [
            "0x" + k.public_key.hex()
            for k in keyring.list_keys()
            if k.scheme == Scheme.BLS
            and not keyring.is_share(k.public_key)
            and any(permits(client, op, k) for op in _SIGNING_OPERATIONS)
        ]
        return json_response(keys)

    def high_watermark(self, call: RestCall) -> Response:
        """Web3Signer's operator-set high watermark; this signer has none, so the empty object the
        API defines for "no high watermark set"."""
        return json_response({})

    def upcheck(self, call: RestCall) -> Response:
        if call.wants_json:
            return json_response({"status": "OK"})
        return Response("OK", media_type=TEXT)

    def healthcheck(self, call: RestCall) -> Response:
        ready, reason = self._readiness()
        checks = self._health_checks()
        up = ready and all(c.get("status") == "UP" for c in checks)
        body: dict[str, object] = {
            "status": "UP" if up else "DOWN",
            "outcome": "UP" if up else "DOWN",
            "checks": checks,
        }
        if not ready:
            body["reason"] = reason
        return json_response(body, 200 if up else 503)

    def reload(self, call: RestCall) -> Response:
        """Re-read the key module's keys (``key_admin``; the operator's one-time code in the
        ``x-signer-operator`` / ``x-signer-otp`` headers where the config asks for one)."""
        assert call.client is not None
        operator, otp = call.headers.get(OPERATOR_METADATA), call.headers.get(OTP_METADATA)
        code = None if operator is None and otp is None else OperatorCode(operator or "", otp or "")
        with self._reload_lock:
            try:
                keys = self._reload_keys(call.client, code)
            except (errors.AccessDenied, errors.RateLimited, errors.RequestError):
                raise  # a refused caller does not change the status of the last reload
            except errors.SignerError as exc:
                self._reload = ReloadStatus("failed", time.time(), message=exc.message)
                raise
            self._reload = ReloadStatus("completed", time.time(), keys=len(keys))
        return json_response({"status": "completed", "keys": len(keys)})

    def reload_status(self, call: RestCall) -> Response:
        current = self._reload
        body: dict[str, object] = {"status": current.status}
        if current.at is not None:
            body["lastOperationTime"] = round(current.at * 1000)
        if current.keys is not None:
            body["keys"] = current.keys
        if current.message is not None:
            body["message"] = current.message
        return json_response(body)


def sign_type_labels() -> list[str]:
    """Every ``method`` label the sign route can report (a closed set, for dashboards and tests)."""
    return [LABEL_PREFIX + "sign", *(LABEL_PREFIX + t.value for t in SignType)]
