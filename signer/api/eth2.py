"""Servicers of the eth2-signer-api (Dirk's gRPC API, spoken by Vouch): Signer, Lister, AccountManager.

They translate proto messages to domain types and back, and nothing else: every decision is the
SigningService's. Per-item refusals travel as ResponseState (DENIED / FAILED) in the response, as
Dirk does; the gRPC status stays OK.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import grpc
import re2  # type: ignore[import-untyped]

from signer import errors
from signer.api import status
from signer.api._proto.v1 import (
    accountmanager_pb2,
    accountmanager_pb2_grpc,
    endpoint_pb2,
    lister_pb2,
    lister_pb2_grpc,
    signer_pb2,
    signer_pb2_grpc,
)
from signer.api.context import CALL_STATE, CallContext, CallState, done
from signer.distributed.accounts import DistributedAccount
from signer.eth2.containers import AttestationData, BeaconBlockHeader, Checkpoint
from signer.service import (
    AttestationRequest,
    GenericRequest,
    Outcome,
    ProposalRequest,
    Refused,
    SigningService,
    SignRequest,
)
from signer.types import ClientIdentity, KeyInfo, KeyRef, Operation, RequestOutcome, Scheme

_Msg = TypeVar(
    "_Msg", signer_pb2.SignRequest, signer_pb2.SignBeaconAttestationRequest, signer_pb2.SignBeaconProposalRequest
)


def key_ref(msg: _Msg) -> KeyRef:
    which = msg.WhichOneof("id")
    if which == "account":
        return KeyRef(account=msg.account)
    if which == "public_key":
        return KeyRef(public_key=bytes(msg.public_key))
    raise errors.MalformedRequest("the request names no key: set account or public_key")


def attestation_request(msg: signer_pb2.SignBeaconAttestationRequest) -> AttestationRequest:
    if not msg.HasField("data"):
        raise errors.MalformedRequest("the request has no attestation data")
    d = msg.data
    for name in ("source", "target"):
        if not d.HasField(name):
            raise errors.MalformedRequest(f"attestation data has no {name} checkpoint")
    data = AttestationData(
        slot=d.slot,
        index=d.committee_index,
        beacon_block_root=bytes(d.beacon_block_root),
        source=Checkpoint(epoch=d.source.epoch, root=bytes(d.source.root)),
        target=Checkpoint(epoch=d.target.epoch, root=bytes(d.target.root)),
    )
    return AttestationRequest(key=key_ref(msg), domain=bytes(msg.domain), data=data)


def proposal_request(msg: signer_pb2.SignBeaconProposalRequest) -> ProposalRequest:
    if not msg.HasField("data"):
        raise errors.MalformedRequest("the request has no block header")
    h = msg.data
    header = BeaconBlockHeader(
        slot=h.slot,
        proposer_index=h.proposer_index,
        parent_root=bytes(h.parent_root),
        state_root=bytes(h.state_root),
        body_root=bytes(h.body_root),
    )
    return ProposalRequest(key=key_ref(msg), domain=bytes(msg.domain), header=header)


def generic_request(msg: signer_pb2.SignRequest) -> GenericRequest:
    return GenericRequest(key=key_ref(msg), domain=bytes(msg.domain), data=bytes(msg.data))


class SignerServicer(signer_pb2_grpc.SignerServicer):
    """Each RPC is ``_sign`` over its messages (one for the single RPCs) with the converter of its
    message type: the same code for one request and for a batch."""

    def __init__(self, service: SigningService, calls: CallContext) -> None:
        self.service = service
        self.calls = calls

    def _sign(
        self,
        context: grpc.ServicerContext,
        method: str,
        messages: Sequence[_Msg],
        convert: Callable[[_Msg], SignRequest],
    ) -> list[signer_pb2.SignResponse]:
        """Convert each message (a malformed one is refused alone), sign the rest as one batch, and
        answer each item (its ResponseState, one audit line); the call's outcome label is its worst
        item's."""
        started = time.perf_counter()
        call: CallState = getattr(context, CALL_STATE, None) or self.calls.call(context)
        outcomes: list[Outcome | None] = []
        requests: list[SignRequest] = []
        for msg in messages:
            try:
                requests.append(convert(msg))
                outcomes.append(None)
            except errors.SignerError as exc:
                outcomes.append(Refused(exc))
        signed = self.calls.sign(call.client, requests) if requests else []
        if len(signed) != len(requests):
            raise errors.InternalError(f"{len(requests)} requests signed, {len(signed)} outcomes returned")
        answers = iter(signed)
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        responses: list[signer_pb2.SignResponse] = []
        labels: list[str] = []
        for outcome in outcomes:
            item = outcome if outcome is not None else next(answers)
            row = self.calls.audit_item(call.client.name, call.request_id, method, item, duration_ms)
            labels.append(row.outcome)
            responses.append(signer_pb2.SignResponse(state=row.state, signature=item.signature or b""))
        call.outcome = max(labels, key=status.SEVERITY.__getitem__, default=RequestOutcome.SUCCEEDED)
        return responses

    def Sign(self, request: signer_pb2.SignRequest, context: grpc.ServicerContext) -> signer_pb2.SignResponse:
        return self._sign(context, "Sign", (request,), generic_request)[0]

    def Multisign(
        self, request: signer_pb2.MultisignRequest, context: grpc.ServicerContext
    ) -> signer_pb2.MultisignResponse:
        self.calls.check_batch_size(context, len(request.requests))
        responses = self._sign(context, "Multisign", request.requests, generic_request)
        return signer_pb2.MultisignResponse(responses=responses)

    def SignBeaconAttestation(
        self, request: signer_pb2.SignBeaconAttestationRequest, context: grpc.ServicerContext
    ) -> signer_pb2.SignResponse:
        return self._sign(context, "SignBeaconAttestation", (request,), attestation_request)[0]

    def SignBeaconAttestations(
        self, request: signer_pb2.SignBeaconAttestationsRequest, context: grpc.ServicerContext
    ) -> signer_pb2.MultisignResponse:
        self.calls.check_batch_size(context, len(request.requests))
        responses = self._sign(context, "SignBeaconAttestations", request.requests, attestation_request)
        return signer_pb2.MultisignResponse(responses=responses)

    def SignBeaconProposal(
        self, request: signer_pb2.SignBeaconProposalRequest, context: grpc.ServicerContext
    ) -> signer_pb2.SignResponse:
        return self._sign(context, "SignBeaconProposal", (request,), proposal_request)[0]


_SIGNING_OPERATIONS = (Operation.SIGN_ATTESTATION, Operation.SIGN_PROPOSAL, Operation.SIGN_GENERIC)

MAX_LIST_PATHS = 64
"""ListAccounts paths per request (Vouch sends one per wallet)."""
MAX_PATH_CHARS = 256
"""Characters per ListAccounts path (an account name is at most 129)."""

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would write the caller's pattern to stderr
_RE2_OPTIONS.max_mem = 1 << 20  # bounds the compiled program (and so compile time) of any pattern


def path_matcher(path: str) -> Callable[[str], bool]:
    """Dirk's account paths (its lister service): ``wallet`` (every account in it) or
    ``wallet/REGEX``, where REGEX is anchored with ``^`` and ``$`` unless it already is, and matched
    against the account part of each name in that wallet.

    The client writes the expression, so it runs on RE2 (google-re2), as Dirk's Go regexp does:
    linear in the name, no backtracking, and the same syntax. Raises MalformedRequest naming what
    is wrong.
    """
    if len(path) > MAX_PATH_CHARS:
        raise errors.MalformedRequest(f"account path of {len(path)} characters is over the limit of {MAX_PATH_CHARS}")
    wallet, _, pattern = path.partition("/")
    if not wallet:
        raise errors.MalformedRequest(f"account path {path!r} names no wallet")
    if not pattern:
        return lambda name: name.partition("/")[0] == wallet
    anchored = ("" if pattern.startswith("^") else "^") + pattern + ("" if pattern.endswith("$") else "$")
    try:
        regex = re2.compile(anchored, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise errors.MalformedRequest(f"account path {path!r} is not a valid pattern: {detail}") from exc

    def match(name: str) -> bool:
        w, _, account = name.partition("/")
        return w == wallet and regex.search(account) is not None

    return match


def path_matchers(paths: Sequence[str]) -> list[Callable[[str], bool]]:
    """One matcher per path (none: every account), at most ``MAX_LIST_PATHS``."""
    if len(paths) > MAX_LIST_PATHS:
        raise errors.MalformedRequest(f"{len(paths)} account paths are over the limit of {MAX_LIST_PATHS}")
    return [path_matcher(p) for p in paths]


class DistributedFront(Protocol):
    """What the Lister and AccountManager need of distributed accounts (signer.api.dkg.DistributedNode)."""

    def share(self, public_key: bytes) -> DistributedAccount | None: ...

    def generate(
        self, client: ClientIdentity, account: str, passphrase: str, participants: int, threshold: int
    ) -> bytes: ...


def distributed_account(key: KeyInfo, account: DistributedAccount) -> lister_pb2.DistributedAccount:
    return lister_pb2.DistributedAccount(
        name=key.name,
        public_key=key.public_key,
        participants=[endpoint_pb2.Endpoint(id=p.id, name=p.name, port=p.port) for p in account.participants],
        signing_threshold=account.threshold,
        uuid=account.uuid,
        composite_public_key=account.composite_public_key,
    )


class ListerServicer(lister_pb2_grpc.ListerServicer):
    def __init__(
        self, service: SigningService, calls: CallContext, distributed: DistributedFront | None = None
    ) -> None:
        self.service = service
        self.calls = calls
        self.distributed = distributed

    def _visible(self, client: ClientIdentity, key: KeyInfo) -> bool:
        permits = self.service.authorizer.permits
        return any(permits(client, op, key) for op in _SIGNING_OPERATIONS)

    def _may_list(self, client: ClientIdentity) -> None:
        """A client that may sign with no key at all sees nothing, and its paths are not even read."""
        permits = self.service.authorizer.permits
        if not any(permits(client, op, None) for op in _SIGNING_OPERATIONS):
            ops = ", ".join(op.value for op in _SIGNING_OPERATIONS)
            raise errors.AccessDenied(f"client '{client.name}' may not list accounts: it may do none of {ops}")

    def ListAccounts(
        self, request: lister_pb2.ListAccountsRequest, context: grpc.ServicerContext
    ) -> lister_pb2.ListAccountsResponse:
        started = time.perf_counter()
        client = self.calls.client(context)
        try:
            self._may_list(client)  # authorize before any work on the caller's paths
            matchers = path_matchers(request.paths)
        except errors.SignerError as exc:
            self.calls.report(context, "ListAccounts", [Refused(exc)], time.perf_counter() - started, client)
            return lister_pb2.ListAccountsResponse(state=status.DENIED)
        accounts: list[lister_pb2.Account] = []
        shares: list[lister_pb2.DistributedAccount] = []
        for k in self.service.keyring.list_keys():
            if not (
                k.scheme == Scheme.BLS
                and self._visible(client, k)
                and (not matchers or any(m(k.name) for m in matchers))
            ):
                continue
            share = self.distributed.share(k.public_key) if self.distributed is not None else None
            if share is None:
                accounts.append(lister_pb2.Account(name=k.name, public_key=k.public_key, uuid=_uuid_of(k)))
            else:
                shares.append(distributed_account(k, share))
        self.calls.report(context, "ListAccounts", [], time.perf_counter() - started, client)
        return lister_pb2.ListAccountsResponse(state=status.SUCCEEDED, Accounts=accounts, DistributedAccounts=shares)


def _uuid_of(key: KeyInfo) -> bytes:
    """A stable 16-byte id per key (Dirk gives accounts a UUID): derived from the public key."""
    return hashlib.sha256(b"account-uuid" + key.public_key).digest()[:16]


def _abort_if_rate_limited(context: grpc.ServicerContext, error: errors.SignerError | None) -> None:
    """A passphrase check refused for a lockout (or a busy check) ends the call as the rate limiter
    does: RESOURCE_EXHAUSTED with retry-after-ms, which the client can act on."""
    if isinstance(error, errors.RateLimited):
        status.abort(context, error)


class AccountManagerServicer(accountmanager_pb2_grpc.AccountManagerServicer):
    def __init__(
        self, service: SigningService, calls: CallContext, distributed: DistributedFront | None = None
    ) -> None:
        self.service = service
        self.calls = calls
        self.distributed = distributed

    def Unlock(
        self, request: accountmanager_pb2.UnlockAccountRequest, context: grpc.ServicerContext
    ) -> accountmanager_pb2.UnlockAccountResponse:
        started = time.perf_counter()
        client = self.calls.client(context)
        error: errors.SignerError | None = None
        try:
            passphrase = bytes(request.passphrase).decode("utf-8")
            self.service.unlock_account(client, KeyRef(account=request.account), passphrase)
        except UnicodeDecodeError:
            error = errors.MalformedRequest("passphrase is not UTF-8")
        except errors.SignerError as exc:
            error = exc
        self.calls.report(context, "Unlock", [done(error)], time.perf_counter() - started, client)
        _abort_if_rate_limited(context, error)
        return accountmanager_pb2.UnlockAccountResponse(state=status.response_state(error))

    def Lock(
        self, request: accountmanager_pb2.LockAccountRequest, context: grpc.ServicerContext
    ) -> accountmanager_pb2.LockAccountResponse:
        started = time.perf_counter()
        client = self.calls.client(context)
        error: errors.SignerError | None = None
        try:
            self.service.lock_account(client, KeyRef(account=request.account))
        except errors.SignerError as exc:
            error = exc
        self.calls.report(context, "Lock", [done(error)], time.perf_counter() - started, client)
        return accountmanager_pb2.LockAccountResponse(state=status.response_state(error))

    def Generate(
        self, request: accountmanager_pb2.GenerateRequest, context: grpc.ServicerContext
    ) -> accountmanager_pb2.GenerateResponse:
        started = time.perf_counter()
        client = self.calls.client(context)
        error: errors.SignerError | None = None
        public_key = b""
        try:
            passphrase = bytes(request.passphrase).decode("utf-8", "replace")
            if request.participants > 1 or request.signing_threshold > 1:
                if self.distributed is None:
                    raise errors.MalformedRequest("this signer serves no distributed accounts")
                public_key = self.distributed.generate(
                    client, request.account, passphrase, request.participants, request.signing_threshold
                )
            else:
                public_key = self.service.generate_account(client, request.account, passphrase).public_key
        except errors.SignerError as exc:
            error = exc
        self.calls.report(context, "Generate", [done(error)], time.perf_counter() - started, client)
        _abort_if_rate_limited(context, error)
        if error is not None:
            return accountmanager_pb2.GenerateResponse(
                state=status.response_state(error), message=status.describe(error)
            )
        return accountmanager_pb2.GenerateResponse(state=status.SUCCEEDED, public_key=public_key)
