"""Distributed accounts over gRPC: the ``v1.DKG`` service between signers, the client side of it
(``GrpcDkgPeers``, what the initiator and Execute use), and ``DistributedNode``, which runs
``AccountManager.Generate`` for ``participants > 1`` as a Joint-Feldman DKG
(signer.distributed.dkg) and stores each participant's share (signer.distributed.accounts).

Who is calling: under mTLS the caller's certificate name must be a configured peer's ``identity``
and the caller must hold the ``dkg`` permission (``[[clients]]``); a caller that is neither is
refused (AccessDenied, naming it). On plaintext, which only ``serve --dev`` on loopback allows, the
caller says which peer it is in the ``x-signer-peer-id`` metadata (anyone on the machine could).

A refusal ends the call with its status (signer.api.status); an aborted generation is ABORTED, and
its culprit travels in the ``x-dkg-culprit`` trailing metadata, so the initiator names it too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf import empty_pb2

from signer import errors
from signer.api import status
from signer.api._proto.v1 import dkg_pb2, dkg_pb2_grpc, endpoint_pb2
from signer.api.context import CallContext, done
from signer.config import DistributedConfig, PeerConfig
from signer.distributed import dkg
from signer.distributed.accounts import DistributedAccount, DistributedAccounts
from signer.service import SigningService
from signer.types import LOCAL_CLIENT, ClientIdentity, Operation

_R = TypeVar("_R")

log = logging.getLogger(__name__)

PEER_ID_KEY = "x-signer-peer-id"
"""Metadata by which a caller on plaintext (``serve --dev`` on loopback only) names its peer id."""

SERVICE_NAME = dkg_pb2.DESCRIPTOR.services_by_name["DKG"].full_name


def endpoint_of(peer: PeerConfig) -> dkg.Endpoint:
    host, _, port = peer.address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return dkg.Endpoint(peer.id, host, int(port))


def endpoints_of(config: DistributedConfig) -> dict[int, dkg.Endpoint]:
    return {p.id: endpoint_of(p) for p in config.peers}


# --- the client side: channels to the peers ------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """How this signer calls its peers: mTLS (certificate, key, the peers' CA) or, in --dev on
    loopback, plaintext naming itself in metadata."""

    own_id: int
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)
    ca: bytes | None = None

    @property
    def tls(self) -> bool:
        return self.cert is not None

    @classmethod
    def from_files(cls, own_id: int, cert: Path, key: Path, ca: Path) -> PeerCredentials:
        try:
            return cls(own_id, cert.read_bytes(), key.read_bytes(), ca.read_bytes())
        except OSError as exc:
            raise errors.ConfigError(f"distributed: cannot read {exc.filename}: {exc.strerror}") from exc


class PeerChannels:
    """One channel per peer, opened on first use, closed by ``close``."""

    def __init__(self, config: DistributedConfig, credentials: PeerCredentials) -> None:
        self._peers = {p.id: p for p in config.peers}
        self._credentials = credentials
        self._timeout_s = config.call_timeout_s
        self._channels: dict[int, grpc.Channel] = {}
        self._lock = threading.Lock()

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def channel(self, peer_id: int) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(peer_id)
            if channel is None:
                peer = self._peers.get(peer_id)
                if peer is None:
                    raise errors.AccessDenied(f"participant {peer_id} is not a configured peer")
                channel = self._open(peer)
                self._channels[peer_id] = channel
            return channel

    def _open(self, peer: PeerConfig) -> grpc.Channel:
        c = self._credentials
        if not c.tls:
            return grpc.insecure_channel(peer.address)
        # The peer's server certificate is checked against the host of its address, as any client
        # checks it; ``identity`` names the peer's client certificate when it calls us.
        creds = grpc.ssl_channel_credentials(root_certificates=c.ca, private_key=c.key, certificate_chain=c.cert)
        return grpc.secure_channel(peer.address, creds)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return () if self._credentials.tls else ((PEER_ID_KEY, str(self._credentials.own_id)),)

    def stub(self, peer_id: int) -> dkg_pb2_grpc.DKGStub:
        return dkg_pb2_grpc.DKGStub(self.channel(peer_id))

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


def _remote_error(exc: grpc.RpcError, participant: int) -> errors.SignerError:
    """A peer's refusal as our error: ABORTED stays DkgAborted with the culprit it named."""
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or "no details"
    if code == grpc.StatusCode.ABORTED:
        culprit: int | None = participant
        trailing = exc.trailing_metadata() if isinstance(exc, grpc.Call) else None
        for key, value in trailing or ():
            if key == status.CULPRIT_KEY and str(value).isdigit():
                culprit = int(value)
        return errors.DkgAborted(details, culprit=culprit)
    name = code.name if code is not None else "transport error"
    return errors.DkgAborted(f"participant {participant}: {name}: {details}", culprit=participant)


@contextmanager
def _translated(participant: int) -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as exc:
        raise _remote_error(exc, participant) from None


class GrpcDkgPeers:
    """``signer.distributed.dkg.DkgPeers`` over gRPC: the initiator's calls to each participant."""

    def __init__(self, channels: PeerChannels) -> None:
        self._channels = channels

    def _call(self, participant_id: int, method: str, request: object) -> object:
        with _translated(participant_id):
            call = getattr(self._channels.stub(participant_id), method)
            return call(request, timeout=self._channels.timeout_s, metadata=self._channels.metadata)

    def prepare(self, participant: dkg.Endpoint, parameters: dkg.SessionParameters) -> None:
        request = dkg_pb2.PrepareRequest(
            account=parameters.account,
            threshold=parameters.threshold,
            participants=[endpoint_pb2.Endpoint(id=p.id, name=p.name, port=p.port) for p in parameters.participants],
        )
        self._call(participant.id, "Prepare", request)

    def execute(self, participant: dkg.Endpoint, account: str) -> None:
        self._call(participant.id, "Execute", dkg_pb2.ExecuteRequest(account=account))

    def commit(self, participant: dkg.Endpoint, account: str, confirmation_data: bytes) -> dkg.CommitResponse:
        request = dkg_pb2.CommitRequest(account=account, confirmation_data=confirmation_data)
        response = self._call(participant.id, "Commit", request)
        assert isinstance(response, dkg_pb2.CommitResponse)
        return dkg.CommitResponse(bytes(response.public_key), bytes(response.confirmation_signature))

    def abort(self, participant: dkg.Endpoint, account: str) -> None:
        try:
            self._channels.stub(participant.id).Abort(
                dkg_pb2.AbortRequest(account=account),
                timeout=self._channels.timeout_s,
                metadata=self._channels.metadata,
            )
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise errors.DkgSessionNotFound(exc.details() or "no such key generation") from None  # dropped already
            raise _remote_error(exc, participant.id) from None

    def contribute(self, contribution: dkg.Contribution) -> tuple[bytes, Sequence[bytes]]:
        request = dkg_pb2.ContributeRequest(
            account=contribution.account,
            secret=contribution.share.to_bytes(),
            verification_vector=list(contribution.verification_vector.commitments),
        )
        response = self._call(contribution.recipient_id, "Contribute", request)
        assert isinstance(response, dkg_pb2.ContributeResponse)
        return bytes(response.secret), [bytes(c) for c in response.verification_vector]


# --- this signer's side --------------------------------------------------------------------


class DistributedNode:
    """This signer as a participant of distributed accounts: the DKG sessions it takes part in,
    the shares it holds, its peers, and the generation it initiates."""

    def __init__(
        self,
        config: DistributedConfig,
        accounts: DistributedAccounts,
        service: SigningService,
        channels: PeerChannels,
        *,
        trust_peer_metadata: bool,
    ) -> None:
        self.config = config
        self.accounts = accounts
        self.service = service
        self.channels = channels
        self.peers = GrpcDkgPeers(channels)
        self.endpoints = endpoints_of(config)
        self.participant = dkg.DkgParticipant(config.id, self.endpoints, timeout_s=config.generation_timeout_s)
        self._trust_peer_metadata = trust_peer_metadata
        self._identities: Mapping[int, str | None] = {p.id: p.identity for p in config.peers}

    @property
    def own_id(self) -> int:
        return self.config.id

    def share(self, public_key: bytes) -> DistributedAccount | None:
        return self.accounts.by_share(public_key)

    def sender_id(self, context: grpc.ServicerContext, client: ClientIdentity) -> int:
        """The participant id of the caller (see the module docstring); AccessDenied if it is none."""
        if self._trust_peer_metadata:
            values = [v for k, v in context.invocation_metadata() or () if k == PEER_ID_KEY]
            if len(values) != 1 or not str(values[0]).isdigit():
                raise errors.AccessDenied(f"a DKG call on plaintext must name its peer id in {PEER_ID_KEY}")
            peer_id = int(values[0])
            if peer_id not in self.endpoints:
                raise errors.AccessDenied(f"the caller (participant {peer_id}) is not a configured peer")
            return peer_id
        if client == LOCAL_CLIENT:
            raise errors.AccessDenied("the DKG service takes calls from peers over mTLS only")
        self.service.authorizer.authorize(client, Operation.DKG, None)
        for peer_id, identity in self._identities.items():
            if identity is not None and (client.name == identity or f"dns:{identity.lower()}" in client.alt_names):
                return peer_id
        raise errors.AccessDenied(f"the caller '{client.name}' is not a configured peer")

    # --- the initiator ---------------------------------------------------------------------

    def generate(
        self, client: ClientIdentity, account: str, passphrase: str, participants: int, threshold: int
    ) -> bytes:
        """AccountManager.Generate for a distributed account: returns the composite public key."""
        self.service.admit_generate(client, account, passphrase)
        chosen = dkg.select_participants(self.own_id, self.endpoints, participants)
        parameters = dkg.SessionParameters(account, threshold, chosen)
        composite = dkg.generate(parameters, self.peers)
        log.info(
            "distributed account generated",
            extra={"account": account, "threshold": threshold, "participants": [p.id for p in chosen]},
        )
        return composite

    # --- the participant -------------------------------------------------------------------

    def prepare(self, sender: int, request: dkg_pb2.PrepareRequest) -> None:
        parameters = dkg.SessionParameters(
            request.account,
            request.threshold,
            tuple(dkg.Endpoint(p.id, p.name, p.port) for p in request.participants),
        )
        if self.service.keyring.has_account(parameters.account):
            raise errors.MalformedRequest(f"account {parameters.account!r} already exists on participant {self.own_id}")
        self.participant.prepare(sender, parameters)

    def execute(self, sender: int, account: str) -> None:
        dkg.run_execute(self.participant, sender, account, self.peers.contribute)

    def commit(self, sender: int, account: str, confirmation_data: bytes) -> dkg.CommitResponse:
        result = self.participant.commit(sender, account, confirmation_data)
        try:
            self.accounts.add_result(result)
        except errors.SignerError as exc:
            self.participant.abort(sender, account)
            raise errors.DkgAborted(
                f"key generation for {account!r} aborted: participant {self.own_id} could not store its share: "
                f"{exc.message}",
                culprit=self.own_id,
            ) from exc
        return dkg.CommitResponse(result.composite_public_key, result.confirmation_signature)

    def abort(self, sender: int, account: str) -> None:
        public_share = self.participant.abort(sender, account)
        if public_share is not None:
            self.accounts.remove(public_share)
            log.warning("distributed account removed: its key generation was aborted", extra={"account": account})

    def close(self) -> None:
        self.channels.close()


class SharesOnly:
    """The Lister's and AccountManager's view of distributed accounts on a signer without
    ``[distributed]``: the shares it holds (imported, or generated before the section was removed)
    are still listed as distributed accounts, and a distributed Generate is refused, saying why."""

    def __init__(self, accounts: DistributedAccounts) -> None:
        self.accounts = accounts

    def share(self, public_key: bytes) -> DistributedAccount | None:
        return self.accounts.by_share(public_key)

    def generate(
        self, client: ClientIdentity, account: str, passphrase: str, participants: int, threshold: int
    ) -> bytes:
        raise errors.MalformedRequest("distributed accounts need [distributed] peers in this signer's configuration")


class DkgServicer(dkg_pb2_grpc.DKGServicer):
    """``v1.DKG``: translates, identifies the caller, and reports each call (metrics, audit)."""

    def __init__(self, node: DistributedNode, calls: CallContext) -> None:
        self.node = node
        self.calls = calls

    def _run(self, context: grpc.ServicerContext, method: str, body: Callable[[int], _R]) -> _R:
        started = time.perf_counter()
        client = self.calls.client(context)
        try:
            result = body(self.node.sender_id(context, client))
        except errors.SignerError as exc:
            self.calls.report(context, method, [done(exc)], time.perf_counter() - started, client)
            status.abort(context, exc)
            raise  # pragma: no cover - abort raises
        self.calls.report(context, method, [done(None)], time.perf_counter() - started, client)
        return result

    def Prepare(self, request: dkg_pb2.PrepareRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self._run(context, "Prepare", lambda sender: self.node.prepare(sender, request))
        return empty_pb2.Empty()

    def Execute(self, request: dkg_pb2.ExecuteRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self._run(context, "Execute", lambda sender: self.node.execute(sender, request.account))
        return empty_pb2.Empty()

    def Contribute(
        self, request: dkg_pb2.ContributeRequest, context: grpc.ServicerContext
    ) -> dkg_pb2.ContributeResponse:
        def body(sender: int) -> dkg_pb2.ContributeResponse:
            reply = self.node.participant.contribute(
                sender, request.account, bytes(request.secret), [bytes(c) for c in request.verification_vector]
            )
            return dkg_pb2.ContributeResponse(
                secret=reply.share.to_bytes(), verification_vector=list(reply.verification_vector.commitments)
            )

        return self._run(context, "Contribute", body)

    def Commit(self, request: dkg_pb2.CommitRequest, context: grpc.ServicerContext) -> dkg_pb2.CommitResponse:
        def body(sender: int) -> dkg_pb2.CommitResponse:
            reply = self.node.commit(sender, request.account, bytes(request.confirmation_data))
            return dkg_pb2.CommitResponse(
                public_key=reply.public_key, confirmation_signature=reply.confirmation_signature
            )

        return self._run(context, "Commit", body)

    def Abort(self, request: dkg_pb2.AbortRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self._run(context, "Abort", lambda sender: self.node.abort(sender, request.account))
        return empty_pb2.Empty()


def dkg_servicers(node: DistributedNode, calls: CallContext) -> list[tuple[object, object, str]]:
    """For ``GrpcServer(extra_servicers=...)``."""
    return [(dkg_pb2_grpc.add_DKGServicer_to_server, DkgServicer(node, calls), SERVICE_NAME)]
