"""Client side of distributed accounts for tools and tests: find an account's participants with
``Lister.ListAccounts`` and have ``signer.distributed.combine`` ask each of them over gRPC, as Vouch
does (the same request, by account name, to every participant)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc

from signer import errors
from signer.api import status
from signer.api._proto.v1 import lister_pb2, lister_pb2_grpc, signer_pb2, signer_pb2_grpc
from signer.distributed.combine import Combined, Refused, threshold_sign


@dataclass(frozen=True, slots=True)
class RemoteAccount:
    """A distributed account as one participant lists it."""

    name: str
    threshold: int
    composite_public_key: bytes
    participants: dict[int, str]
    """participant id -> host:port"""


def find_account(channel: grpc.Channel, account: str, *, timeout_s: float = 10.0) -> RemoteAccount:
    """The distributed account ``wallet/account`` as the signer behind ``channel`` lists it."""
    wallet, _, name = account.partition("/")
    path = f"{wallet}/{name}" if name else wallet
    response = lister_pb2_grpc.ListerStub(channel).ListAccounts(
        lister_pb2.ListAccountsRequest(paths=[path]), timeout=timeout_s
    )
    if response.state != status.SUCCEEDED:
        raise errors.AccessDenied(f"listing {account!r} was refused ({status.ResponseState.Name(response.state)})")
    for entry in response.DistributedAccounts:
        if entry.name == account:
            participants = {
                e.id: (f"[{e.name}]:{e.port}" if ":" in e.name else f"{e.name}:{e.port}") for e in entry.participants
            }
            return RemoteAccount(entry.name, entry.signing_threshold, bytes(entry.composite_public_key), participants)
    raise errors.UnknownKey(f"no distributed account {account!r} is listed there")


SignCall = Callable[[signer_pb2_grpc.SignerStub, float], signer_pb2.SignResponse]
"""One request to one participant's Signer: ``lambda stub, timeout: stub.Sign(request, timeout=timeout)``."""


def asker(channels: Mapping[int, grpc.Channel], call: SignCall, *, timeout_s: float = 10.0) -> Callable[[int], bytes]:
    """``ask(participant_id)`` for ``threshold_sign``: the same call to that participant's Signer."""

    def ask(participant_id: int) -> bytes:
        try:
            response = call(signer_pb2_grpc.SignerStub(channels[participant_id]), timeout_s)
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "transport error"
            raise Refused(f"{code}: {exc.details() if isinstance(exc, grpc.Call) else exc}") from None
        if response.state != status.SUCCEEDED:
            raise Refused(status.ResponseState.Name(response.state))
        return bytes(response.signature)

    return ask


def sign_distributed(
    account: RemoteAccount,
    channels: Mapping[int, grpc.Channel],
    call: SignCall,
    signing_root: bytes,
    *,
    timeout_s: float = 10.0,
) -> Combined:
    """Fan ``call`` out to every participant, combine a threshold, verify under the composite key."""
    return threshold_sign(
        account.participants,
        account.threshold,
        account.composite_public_key,
        signing_root,
        asker(channels, call, timeout_s=timeout_s),
        timeout_s=timeout_s,
    )


@dataclass(frozen=True, slots=True)
class ClientTls:
    """mTLS material for calls to the signers (PEM bytes)."""

    cert: bytes
    key: bytes = field(repr=False)
    ca: bytes


def _channel(address: str, tls: ClientTls | None) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
    )
    return grpc.secure_channel(address, credentials)


def sign_generic(
    endpoint: str,
    account: str,
    domain: bytes,
    data: bytes,
    signing_root: bytes,
    *,
    tls: ClientTls | None = None,
    timeout_s: float = 10.0,
) -> tuple[RemoteAccount, Combined]:
    """``signer distributed sign``: list ``account`` at ``endpoint``, send the same ``Sign`` (by
    account name) to every participant, combine a threshold, verify under the composite key."""
    first = _channel(endpoint, tls)
    channels: dict[int, grpc.Channel] = {}
    try:
        remote = find_account(first, account, timeout_s=timeout_s)
        channels = {i: _channel(address, tls) for i, address in remote.participants.items()}
        request = signer_pb2.SignRequest(account=account, domain=domain, data=data)
        combined = sign_distributed(
            remote,
            channels,
            lambda stub, timeout: stub.Sign(request, timeout=timeout),
            signing_root,
            timeout_s=timeout_s,
        )
    finally:
        for channel in (first, *channels.values()):
            channel.close()
    return remote, combined
