"""The generated gRPC code speaks the upstream wire: service names, method paths, field numbers.

Where the expected values come from (the facts, not the code, carry over):
- eth2-signer-api: wealdtech/eth2-signer-api pb/v1/*_grpc.pb.go (method paths) and the generated
  *.pb.go struct tags at commit 4aaf36e54f4e62d0cf4edc1b794e9a6354cf4f95 (field numbers), e.g.
  `ProposerIndex uint64 protobuf:"varint,2,..."` in eth2.pb.go.
  The DKG service (signer to signer, issue 17): pb/v1/dkg.proto, dkg.pb.go and dkg_grpc.pb.go at
  the same commit.
- privval: tendermint/tendermint proto/tendermint/privval/service.proto (service and methods);
  cometbft/cometbft v0.38 proto/tendermint/types/{types,canonical}.proto and
  proto/tendermint/privval/types.proto (field numbers); skip_extension_signing = 3 as in
  cometbft.privval.v1 (cometbft#2496, #2522).
- sign-bytes vectors: cometbft/cometbft types/vote_test.go TestVoteSignBytesTestVectors.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor, FileDescriptor, ServiceDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from signer.api._proto.signer.admin.v1 import admin_pb2, admin_pb2_grpc
from signer.api._proto.tendermint.privval import service_pb2, service_pb2_grpc
from signer.api._proto.tendermint.privval import types_pb2 as privval_types_pb2
from signer.api._proto.tendermint.types import canonical_pb2
from signer.api._proto.tendermint.types import types_pb2 as tendermint_types_pb2
from signer.api._proto.v1 import (
    accountmanager_pb2,
    accountmanager_pb2_grpc,
    dkg_pb2,
    dkg_pb2_grpc,
    endpoint_pb2,
    lister_pb2,
    lister_pb2_grpc,
    signer_pb2,
    signer_pb2_grpc,
)

PROTO_PACKAGE = "signer.api._proto"

# (file descriptor, generated grpc module) per service.
SERVICES: dict[str, tuple[FileDescriptor, ModuleType]] = {
    "v1.Signer": (signer_pb2.DESCRIPTOR, signer_pb2_grpc),
    "v1.Lister": (lister_pb2.DESCRIPTOR, lister_pb2_grpc),
    "v1.AccountManager": (accountmanager_pb2.DESCRIPTOR, accountmanager_pb2_grpc),
    "v1.DKG": (dkg_pb2.DESCRIPTOR, dkg_pb2_grpc),
    "tendermint.privval.PrivValidatorAPI": (service_pb2.DESCRIPTOR, service_pb2_grpc),
    "signer.admin.v1.KeyAdmin": (admin_pb2.DESCRIPTOR, admin_pb2_grpc),
    "signer.admin.v1.ProtectionAdmin": (admin_pb2.DESCRIPTOR, admin_pb2_grpc),
    "signer.admin.v1.Status": (admin_pb2.DESCRIPTOR, admin_pb2_grpc),
    "signer.admin.v1.Approvals": (admin_pb2.DESCRIPTOR, admin_pb2_grpc),
}

# Every method path with its request and response message, exactly as upstream names them.
METHODS: dict[str, tuple[str, str]] = {
    "/v1.Signer/Sign": ("v1.SignRequest", "v1.SignResponse"),
    "/v1.Signer/Multisign": ("v1.MultisignRequest", "v1.MultisignResponse"),
    "/v1.Signer/SignBeaconAttestation": ("v1.SignBeaconAttestationRequest", "v1.SignResponse"),
    "/v1.Signer/SignBeaconAttestations": ("v1.SignBeaconAttestationsRequest", "v1.MultisignResponse"),
    "/v1.Signer/SignBeaconProposal": ("v1.SignBeaconProposalRequest", "v1.SignResponse"),
    "/v1.Lister/ListAccounts": ("v1.ListAccountsRequest", "v1.ListAccountsResponse"),
    "/v1.AccountManager/Unlock": ("v1.UnlockAccountRequest", "v1.UnlockAccountResponse"),
    "/v1.AccountManager/Lock": ("v1.LockAccountRequest", "v1.LockAccountResponse"),
    "/v1.AccountManager/Generate": ("v1.GenerateRequest", "v1.GenerateResponse"),
    "/v1.DKG/Prepare": ("v1.PrepareRequest", "google.protobuf.Empty"),
    "/v1.DKG/Execute": ("v1.ExecuteRequest", "google.protobuf.Empty"),
    "/v1.DKG/Commit": ("v1.CommitRequest", "v1.CommitResponse"),
    "/v1.DKG/Abort": ("v1.AbortRequest", "google.protobuf.Empty"),
    "/v1.DKG/Contribute": ("v1.ContributeRequest", "v1.ContributeResponse"),
    "/tendermint.privval.PrivValidatorAPI/GetPubKey": (
        "tendermint.privval.PubKeyRequest",
        "tendermint.privval.PubKeyResponse",
    ),
    "/tendermint.privval.PrivValidatorAPI/SignVote": (
        "tendermint.privval.SignVoteRequest",
        "tendermint.privval.SignedVoteResponse",
    ),
    "/tendermint.privval.PrivValidatorAPI/SignProposal": (
        "tendermint.privval.SignProposalRequest",
        "tendermint.privval.SignedProposalResponse",
    ),
    # Our own admin API: pinned here so that a rename is a deliberate, visible change.
    "/signer.admin.v1.KeyAdmin/ListKeys": (
        "signer.admin.v1.ListKeysRequest",
        "signer.admin.v1.ListKeysResponse",
    ),
    "/signer.admin.v1.KeyAdmin/ImportKeystores": (
        "signer.admin.v1.ImportKeystoresRequest",
        "signer.admin.v1.ImportKeystoresResponse",
    ),
    "/signer.admin.v1.KeyAdmin/GenerateKeys": (
        "signer.admin.v1.GenerateKeysRequest",
        "signer.admin.v1.GenerateKeysResponse",
    ),
    "/signer.admin.v1.KeyAdmin/DeleteKeys": (
        "signer.admin.v1.DeleteKeysRequest",
        "signer.admin.v1.DeleteKeysResponse",
    ),
    "/signer.admin.v1.KeyAdmin/ReloadKeys": (
        "signer.admin.v1.ReloadKeysRequest",
        "signer.admin.v1.ReloadKeysResponse",
    ),
    "/signer.admin.v1.ProtectionAdmin/ImportInterchange": (
        "signer.admin.v1.ImportInterchangeRequest",
        "signer.admin.v1.ImportInterchangeResponse",
    ),
    "/signer.admin.v1.ProtectionAdmin/ExportInterchange": (
        "signer.admin.v1.ExportInterchangeRequest",
        "signer.admin.v1.ExportInterchangeResponse",
    ),
    "/signer.admin.v1.ProtectionAdmin/ImportCometbftState": (
        "signer.admin.v1.ImportCometbftStateRequest",
        "signer.admin.v1.ImportCometbftStateResponse",
    ),
    "/signer.admin.v1.ProtectionAdmin/ExportCometbftState": (
        "signer.admin.v1.ExportCometbftStateRequest",
        "signer.admin.v1.ExportCometbftStateResponse",
    ),
    "/signer.admin.v1.Status/GetStatus": (
        "signer.admin.v1.GetStatusRequest",
        "signer.admin.v1.GetStatusResponse",
    ),
    "/signer.admin.v1.Approvals/ListPending": (
        "signer.admin.v1.ListPendingRequest",
        "signer.admin.v1.ListPendingResponse",
    ),
    "/signer.admin.v1.Approvals/ApproveDeleteKeys": (
        "signer.admin.v1.ApproveRequest",
        "signer.admin.v1.DeleteKeysResponse",
    ),
    "/signer.admin.v1.Approvals/ApproveImportKeystores": (
        "signer.admin.v1.ApproveRequest",
        "signer.admin.v1.ImportKeystoresResponse",
    ),
    "/signer.admin.v1.Approvals/ApproveImportInterchange": (
        "signer.admin.v1.ApproveRequest",
        "signer.admin.v1.ImportInterchangeResponse",
    ),
    "/signer.admin.v1.Approvals/ApproveImportCometbftState": (
        "signer.admin.v1.ApproveRequest",
        "signer.admin.v1.ImportCometbftStateResponse",
    ),
}

# Our own admin API's documents can outgrow one gRPC message: these answer as a server stream.
SERVER_STREAMING = {
    "/signer.admin.v1.KeyAdmin/DeleteKeys",
    "/signer.admin.v1.ProtectionAdmin/ExportInterchange",
    "/signer.admin.v1.Approvals/ApproveDeleteKeys",
}

_T = FieldDescriptor
# (message full name, field, number, wire type) from the upstream sources named in the docstring.
UPSTREAM_FIELDS: list[tuple[str, str, int, int]] = [
    ("v1.SignRequest", "public_key", 1, _T.TYPE_BYTES),
    ("v1.SignRequest", "account", 2, _T.TYPE_STRING),
    ("v1.SignRequest", "data", 3, _T.TYPE_BYTES),
    ("v1.SignRequest", "domain", 4, _T.TYPE_BYTES),
    ("v1.MultisignRequest", "requests", 1, _T.TYPE_MESSAGE),
    ("v1.SignBeaconAttestationRequest", "domain", 3, _T.TYPE_BYTES),
    ("v1.SignBeaconAttestationRequest", "data", 4, _T.TYPE_MESSAGE),
    ("v1.SignBeaconProposalRequest", "data", 4, _T.TYPE_MESSAGE),
    ("v1.SignResponse", "state", 1, _T.TYPE_ENUM),
    ("v1.SignResponse", "signature", 2, _T.TYPE_BYTES),
    ("v1.MultisignResponse", "responses", 1, _T.TYPE_MESSAGE),
    ("v1.AttestationData", "committee_index", 2, _T.TYPE_UINT64),
    ("v1.AttestationData", "beacon_block_root", 3, _T.TYPE_BYTES),
    ("v1.AttestationData", "target", 5, _T.TYPE_MESSAGE),
    ("v1.Checkpoint", "epoch", 1, _T.TYPE_UINT64),
    ("v1.BeaconBlockHeader", "proposer_index", 2, _T.TYPE_UINT64),
    ("v1.BeaconBlockHeader", "parent_root", 3, _T.TYPE_BYTES),
    ("v1.BeaconBlockHeader", "body_root", 5, _T.TYPE_BYTES),
    ("v1.ListAccountsResponse", "Accounts", 2, _T.TYPE_MESSAGE),
    ("v1.ListAccountsResponse", "DistributedAccounts", 3, _T.TYPE_MESSAGE),
    ("v1.Account", "uuid", 3, _T.TYPE_BYTES),
    ("v1.DistributedAccount", "signing_threshold", 4, _T.TYPE_UINT32),
    ("v1.DistributedAccount", "composite_public_key", 6, _T.TYPE_BYTES),
    ("v1.Endpoint", "id", 1, _T.TYPE_UINT64),
    ("v1.Endpoint", "port", 3, _T.TYPE_UINT32),
    ("v1.UnlockAccountRequest", "passphrase", 2, _T.TYPE_BYTES),
    ("v1.GenerateRequest", "signing_threshold", 4, _T.TYPE_UINT32),
    ("v1.GenerateResponse", "participants", 4, _T.TYPE_MESSAGE),
    ("v1.DistributedAccount", "name", 1, _T.TYPE_STRING),
    ("v1.DistributedAccount", "public_key", 2, _T.TYPE_BYTES),
    ("v1.DistributedAccount", "participants", 3, _T.TYPE_MESSAGE),
    ("v1.DistributedAccount", "uuid", 5, _T.TYPE_BYTES),
    ("v1.Endpoint", "name", 2, _T.TYPE_STRING),
    ("v1.GenerateRequest", "participants", 3, _T.TYPE_UINT32),
    ("v1.PrepareRequest", "account", 1, _T.TYPE_STRING),
    ("v1.PrepareRequest", "threshold", 2, _T.TYPE_UINT32),
    ("v1.PrepareRequest", "participants", 3, _T.TYPE_MESSAGE),
    ("v1.PrepareRequest", "passphrase", 4, _T.TYPE_BYTES),
    ("v1.ExecuteRequest", "account", 1, _T.TYPE_STRING),
    ("v1.CommitRequest", "account", 1, _T.TYPE_STRING),
    ("v1.CommitRequest", "confirmation_data", 2, _T.TYPE_BYTES),
    ("v1.CommitResponse", "public_key", 1, _T.TYPE_BYTES),
    ("v1.CommitResponse", "confirmation_signature", 2, _T.TYPE_BYTES),
    ("v1.AbortRequest", "account", 1, _T.TYPE_STRING),
    ("v1.ContributeRequest", "account", 1, _T.TYPE_STRING),
    ("v1.ContributeRequest", "secret", 2, _T.TYPE_BYTES),
    ("v1.ContributeRequest", "verification_vector", 3, _T.TYPE_BYTES),
    ("v1.ContributeResponse", "secret", 1, _T.TYPE_BYTES),
    ("v1.ContributeResponse", "verification_vector", 2, _T.TYPE_BYTES),
    ("tendermint.types.Vote", "type", 1, _T.TYPE_ENUM),
    ("tendermint.types.Vote", "height", 2, _T.TYPE_INT64),
    ("tendermint.types.Vote", "round", 3, _T.TYPE_INT32),
    ("tendermint.types.Vote", "timestamp", 5, _T.TYPE_MESSAGE),
    ("tendermint.types.Vote", "validator_index", 7, _T.TYPE_INT32),
    ("tendermint.types.Vote", "signature", 8, _T.TYPE_BYTES),
    ("tendermint.types.Vote", "extension", 9, _T.TYPE_BYTES),
    ("tendermint.types.Vote", "extension_signature", 10, _T.TYPE_BYTES),
    ("tendermint.types.Proposal", "pol_round", 4, _T.TYPE_INT32),
    ("tendermint.types.Proposal", "block_id", 5, _T.TYPE_MESSAGE),
    ("tendermint.types.Proposal", "signature", 7, _T.TYPE_BYTES),
    ("tendermint.types.BlockID", "part_set_header", 2, _T.TYPE_MESSAGE),
    ("tendermint.types.PartSetHeader", "total", 1, _T.TYPE_UINT32),
    ("tendermint.types.CanonicalVote", "height", 2, _T.TYPE_SFIXED64),
    ("tendermint.types.CanonicalVote", "round", 3, _T.TYPE_SFIXED64),
    ("tendermint.types.CanonicalVote", "chain_id", 6, _T.TYPE_STRING),
    ("tendermint.types.CanonicalProposal", "pol_round", 4, _T.TYPE_INT64),
    ("tendermint.types.CanonicalProposal", "chain_id", 7, _T.TYPE_STRING),
    ("tendermint.types.CanonicalVoteExtension", "extension", 1, _T.TYPE_BYTES),
    ("tendermint.types.CanonicalVoteExtension", "height", 2, _T.TYPE_SFIXED64),
    ("tendermint.types.CanonicalVoteExtension", "chain_id", 4, _T.TYPE_STRING),
    ("tendermint.crypto.PublicKey", "ed25519", 1, _T.TYPE_BYTES),
    ("tendermint.crypto.PublicKey", "secp256k1", 2, _T.TYPE_BYTES),
    ("tendermint.privval.PubKeyResponse", "error", 2, _T.TYPE_MESSAGE),
    ("tendermint.privval.SignVoteRequest", "chain_id", 2, _T.TYPE_STRING),
    ("tendermint.privval.SignVoteRequest", "skip_extension_signing", 3, _T.TYPE_BOOL),
    ("tendermint.privval.SignedProposalResponse", "error", 2, _T.TYPE_MESSAGE),
    ("tendermint.privval.RemoteSignerError", "description", 2, _T.TYPE_STRING),
    ("tendermint.privval.Message", "sign_vote_request", 3, _T.TYPE_MESSAGE),
    ("tendermint.privval.Message", "ping_response", 8, _T.TYPE_MESSAGE),
]

UPSTREAM_ENUM_VALUES: list[tuple[str, str, int]] = [
    ("v1.ResponseState", "UNKNOWN", 0),
    ("v1.ResponseState", "SUCCEEDED", 1),
    ("v1.ResponseState", "DENIED", 2),
    ("v1.ResponseState", "FAILED", 3),
    ("tendermint.types.SignedMsgType", "SIGNED_MSG_TYPE_PREVOTE", 1),
    ("tendermint.types.SignedMsgType", "SIGNED_MSG_TYPE_PRECOMMIT", 2),
    ("tendermint.types.SignedMsgType", "SIGNED_MSG_TYPE_PROPOSAL", 32),
]

# Go's zero time.Time, which CometBFT always encodes in canonical votes.
GO_ZERO_TIME_S = -62135596800
GO_ZERO_TIMESTAMP = bytes([0x2A, 0x0B, 0x08, 0x80, 0x92, 0xB8, 0xC3, 0x98, 0xFE, 0xFF, 0xFF, 0xFF, 0x01])
HEIGHT_1_ROUND_1 = bytes([0x11, 1, 0, 0, 0, 0, 0, 0, 0, 0x19, 1, 0, 0, 0, 0, 0, 0, 0])


def _service(full_name: str) -> ServiceDescriptor:
    file_descriptor, _ = SERVICES[full_name]
    return file_descriptor.services_by_name[full_name.rsplit(".", 1)[1]]


def _paths_of(full_name: str) -> set[str]:
    return {f"/{full_name}/{method.name}" for method in _service(full_name).methods}


def _length_delimited(message: Any) -> bytes:
    body: bytes = message.SerializeToString()
    length, prefix = len(body), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        prefix.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(prefix) + body


# ------------------------------------------------------------------------------ descriptors


@pytest.mark.parametrize("full_name", sorted(SERVICES))
def test_service_full_name(full_name: str) -> None:
    assert _service(full_name).full_name == full_name


@pytest.mark.parametrize("full_name", sorted(SERVICES))
def test_service_has_exactly_the_upstream_methods(full_name: str) -> None:
    expected = {path for path in METHODS if path.startswith(f"/{full_name}/")}
    assert _paths_of(full_name) == expected


@pytest.mark.parametrize("path", sorted(METHODS))
def test_method_request_and_response_types(path: str) -> None:
    service_name, method_name = path[1:].split("/")
    method = _service(service_name).methods_by_name[method_name]
    assert (method.input_type.full_name, method.output_type.full_name) == METHODS[path]
    assert not method.client_streaming
    assert method.server_streaming == (path in SERVER_STREAMING)


@pytest.mark.parametrize(
    ("message", "field", "number", "wire_type"),
    UPSTREAM_FIELDS,
    ids=[f"{message}.{field}={number}" for message, field, number, _ in UPSTREAM_FIELDS],
)
def test_field_number_matches_upstream(message: str, field: str, number: int, wire_type: int) -> None:
    descriptor = descriptor_pool.Default().FindMessageTypeByName(message)
    assert descriptor.fields_by_name[field].number == number
    assert descriptor.fields_by_name[field].type == wire_type


@pytest.mark.parametrize(
    ("enum", "name", "number"),
    UPSTREAM_ENUM_VALUES,
    ids=[f"{enum}.{name}={number}" for enum, name, number in UPSTREAM_ENUM_VALUES],
)
def test_enum_value_matches_upstream(enum: str, name: str, number: int) -> None:
    descriptor = descriptor_pool.Default().FindEnumTypeByName(enum)
    assert descriptor.values_by_name[name].number == number


# Repeated fields upstream (`rep` in the struct tags); every other field above is singular.
UPSTREAM_REPEATED: list[tuple[str, str]] = [
    ("v1.MultisignRequest", "requests"),
    ("v1.MultisignResponse", "responses"),
    ("v1.ListAccountsResponse", "Accounts"),
    ("v1.ListAccountsResponse", "DistributedAccounts"),
    ("v1.GenerateResponse", "participants"),
    ("v1.DistributedAccount", "participants"),
    ("v1.PrepareRequest", "participants"),
    ("v1.ContributeRequest", "verification_vector"),
    ("v1.ContributeResponse", "verification_vector"),
]


@pytest.mark.parametrize(
    ("message", "field"),
    [(message, field) for message, field, _, _ in UPSTREAM_FIELDS if message.startswith("v1.")],
    ids=[f"{message}.{field}" for message, field, _, _ in UPSTREAM_FIELDS if message.startswith("v1.")],
)
def test_field_is_repeated_exactly_where_upstream_repeats_it(message: str, field: str) -> None:
    descriptor = descriptor_pool.Default().FindMessageTypeByName(message).fields_by_name[field]
    repeated = descriptor.is_repeated
    assert repeated == ((message, field) in UPSTREAM_REPEATED)


def test_sign_request_identifies_the_key_by_a_oneof() -> None:
    request = signer_pb2.SignRequest(account="wallet/account")
    request.public_key = b"\x01" * 48
    assert request.WhichOneof("id") == "public_key"
    assert request.account == ""


# ------------------------------------------------------------------------------ wire bytes


@pytest.mark.parametrize(
    ("chain_id", "expected"),
    [
        # vote_test.go case 3: &Vote{Height: 1, Round: 1}, chain id "".
        ("", bytes([0x1F]) + HEIGHT_1_ROUND_1 + GO_ZERO_TIMESTAMP),
        # vote_test.go case 4: the same with chain id "test_chain_id".
        ("test_chain_id", bytes([0x2E]) + HEIGHT_1_ROUND_1 + GO_ZERO_TIMESTAMP + b"\x32\x0dtest_chain_id"),
    ],
    ids=["empty-chain-id", "test_chain_id"],
)
def test_canonical_vote_encodes_like_cometbft(chain_id: str, expected: bytes) -> None:
    vote = canonical_pb2.CanonicalVote(
        height=1, round=1, timestamp=Timestamp(seconds=GO_ZERO_TIME_S), chain_id=chain_id
    )
    assert _length_delimited(vote) == expected


def test_canonical_precommit_encodes_like_cometbft() -> None:
    # vote_test.go case 1: &Vote{Height: 1, Round: 1, Type: PrecommitType}.
    vote = canonical_pb2.CanonicalVote(
        type=tendermint_types_pb2.SIGNED_MSG_TYPE_PRECOMMIT,
        height=1,
        round=1,
        timestamp=Timestamp(seconds=GO_ZERO_TIME_S),
    )
    assert _length_delimited(vote) == bytes([0x21, 0x08, 0x02]) + HEIGHT_1_ROUND_1 + GO_ZERO_TIMESTAMP


def test_contribute_request_on_the_wire() -> None:
    # account(1) "w/a", secret(2) 32 bytes, verification_vector(3) twice, 48 bytes each: what Dirk's
    # sender (services/sender/grpc) puts on the wire for a 2-of-n account.
    secret, first, second = b"\x11" * 32, b"\xa1" * 48, b"\xa2" * 48
    request = dkg_pb2.ContributeRequest(account="w/a", secret=secret, verification_vector=[first, second])
    expected = b"\x0a\x03w/a" + b"\x12\x20" + secret + b"\x1a\x30" + first + b"\x1a\x30" + second
    assert request.SerializeToString() == expected
    response = dkg_pb2.ContributeResponse.FromString(b"\x0a\x20" + secret + b"\x12\x30" + first)
    assert (response.secret, list(response.verification_vector)) == (secret, [first])


def test_prepare_request_on_the_wire() -> None:
    request = dkg_pb2.PrepareRequest(
        account="w/a",
        threshold=2,
        participants=[
            endpoint_pb2.Endpoint(id=1, name="h1", port=8881),
            endpoint_pb2.Endpoint(id=2, name="h2", port=1),
        ],
        passphrase=b"p",
    )
    endpoint_1 = b"\x08\x01\x12\x02h1\x18\xb1\x45"  # id 1, name "h1", port 8881 (varint b1 45)
    endpoint_2 = b"\x08\x02\x12\x02h2\x18\x01"
    expected = (
        b"\x0a\x03w/a\x10\x02"
        + b"\x1a"
        + bytes([len(endpoint_1)])
        + endpoint_1
        + b"\x1a"
        + bytes([len(endpoint_2)])
        + endpoint_2
        + b"\x22\x01p"
    )
    assert request.SerializeToString() == expected


def test_commit_round_trip_on_the_wire() -> None:
    request = dkg_pb2.CommitRequest(account="w/a", confirmation_data=b"\x07" * 32)
    assert request.SerializeToString() == b"\x0a\x03w/a\x12\x20" + b"\x07" * 32
    response = dkg_pb2.CommitResponse(public_key=b"\xb0" * 48, confirmation_signature=b"\xc0" * 96)
    assert response.SerializeToString() == b"\x0a\x30" + b"\xb0" * 48 + b"\x12\x60" + b"\xc0" * 96


def test_beacon_block_header_field_order_on_the_wire() -> None:
    header = signer_pb2.SignBeaconProposalRequest(
        public_key=b"\xaa",
        domain=b"\xbb",
        data={
            "slot": 1,
            "proposer_index": 2,
            "parent_root": b"\x03",
            "state_root": b"\x04",
            "body_root": b"\x05",
        },
    )
    # public_key(1) domain(3) data(4){slot(1) proposer_index(2) parent_root(3) state_root(4) body_root(5)}
    inner = bytes([0x08, 1, 0x10, 2, 0x1A, 1, 3, 0x22, 1, 4, 0x2A, 1, 5])
    assert header.SerializeToString() == bytes([0x0A, 1, 0xAA, 0x1A, 1, 0xBB, 0x22, len(inner)]) + inner


# ------------------------------------------------------------------------------ real server


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []


def _servicer_for(full_name: str, recorder: _Recorder) -> object:
    """An instance of the generated <Service>Servicer whose methods record the call."""
    _, grpc_module = SERVICES[full_name]
    short_name = full_name.rsplit(".", 1)[1]
    base = getattr(grpc_module, f"{short_name}Servicer")
    methods: dict[str, Any] = {}
    for method in _service(full_name).methods:
        response_class = message_factory.GetMessageClass(method.output_type)
        path = f"/{full_name}/{method.name}"

        def handler(self: object, request: Any, context: Any, _path: str = path, _cls: Any = response_class) -> Any:
            recorder.calls.append(_path)
            return iter([_cls()]) if _path in SERVER_STREAMING else _cls()

        methods[method.name] = handler
    return type(f"Recording{short_name}", (base,), methods)()


@pytest.fixture(scope="module")
def live_channel() -> Iterator[tuple[grpc.Channel, _Recorder]]:
    recorder = _Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    for full_name, (_, grpc_module) in SERVICES.items():
        add = getattr(grpc_module, f"add_{full_name.rsplit('.', 1)[1]}Servicer_to_server")
        add(_servicer_for(full_name, recorder), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, recorder
    finally:
        channel.close()
        server.stop(grace=None)


@pytest.mark.parametrize("path", sorted(METHODS))
def test_upstream_path_is_served(path: str, live_channel: tuple[grpc.Channel, _Recorder]) -> None:
    channel, recorder = live_channel
    if path in SERVER_STREAMING:
        (response,) = list(channel.unary_stream(path, None, None)(b"", timeout=10))
    else:
        response = channel.unary_unary(path, None, None)(b"", timeout=10)  # raw bytes: only the path string is tested
    assert isinstance(response, bytes)
    assert recorder.calls[-1] == path


@pytest.mark.parametrize(
    "path", ["/v1.Signer/SignBeaconBlock", "/v1.signer/Sign", "/privval.PrivValidatorAPI/SignVote"]
)
def test_unknown_path_is_unimplemented(path: str, live_channel: tuple[grpc.Channel, _Recorder]) -> None:
    channel, _ = live_channel
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary(path, None, None)(b"", timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_generated_dkg_stub_calls_the_upstream_paths(live_channel: tuple[grpc.Channel, _Recorder]) -> None:
    channel, recorder = live_channel
    stub = dkg_pb2_grpc.DKGStub(channel)
    stub.Prepare(dkg_pb2.PrepareRequest(account="w/a", threshold=2), timeout=10)
    assert recorder.calls[-1] == "/v1.DKG/Prepare"
    response = stub.Contribute(dkg_pb2.ContributeRequest(account="w/a", secret=b"\x01" * 32), timeout=10)
    assert isinstance(response, dkg_pb2.ContributeResponse)
    assert recorder.calls[-1] == "/v1.DKG/Contribute"


def test_generated_stub_calls_the_upstream_path(live_channel: tuple[grpc.Channel, _Recorder]) -> None:
    channel, recorder = live_channel
    stub = service_pb2_grpc.PrivValidatorAPIStub(channel)
    response = stub.SignVote(privval_types_pb2.SignVoteRequest(chain_id="c", skip_extension_signing=True))
    assert response.error.description == ""
    assert recorder.calls[-1] == "/tendermint.privval.PrivValidatorAPI/SignVote"


# ------------------------------------------------------------------------------ imports

GRPC_MODULES = sorted(module.__name__ for _, module in SERVICES.values())


@pytest.mark.slow  # a fresh interpreter per module
@pytest.mark.parametrize("module", sorted(set(GRPC_MODULES)))
def test_grpc_module_imports_in_a_fresh_interpreter(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def _all_pb2_modules() -> list[str]:
    base = Path(importlib.import_module(PROTO_PACKAGE).__path__[0])
    return sorted(
        f"{PROTO_PACKAGE}." + ".".join(path.relative_to(base).with_suffix("").parts) for path in base.rglob("*_pb2.py")
    )


@pytest.mark.parametrize("module", _all_pb2_modules())
def test_pb2_module_imports(module: str) -> None:
    assert importlib.import_module(module).DESCRIPTOR.name.endswith(".proto")
