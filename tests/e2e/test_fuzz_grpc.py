"""Fuzzing the gRPC surface of a real ``signer serve`` process (hypothesis, bounded: ~200 examples).

Every unary method of v1.Signer, v1.Lister, v1.AccountManager, tendermint.privval.PrivValidatorAPI
and the signer.admin.v1 services is called through ``channel.unary_unary`` with identity
serializers, so the test controls the exact bytes on the wire:

* random bytes as the request body, on every method path;
* structurally valid messages with random field values (any length of bytes, the whole range of
  every integer type, unknown enum values, missing fields, nested messages), built from the
  generated descriptors;
* near-valid signing requests (a real key, the right domain, 32-byte roots) mixed with broken
  ones, so that some requests really are signed and the oracle below is exercised;
* a message over the server's ``max_message_bytes`` on every path.

For each call: no hang (a client deadline per call), an answer that says what happened (an OK
response whose ResponseState / admin status / RemoteSignerError is set, or a gRPC status other than
UNKNOWN with a non-empty details message), and no signature for invalid input: a signature is
only acceptable in a SUCCEEDED response to a request that is valid by an independent check, and it
must verify (blspy over the hashlib SSZ signing root of tests.e2e.harness; coincurve over the
canonical CometBFT sign bytes). After the run the server still answers health checks and signs.

The server runs from a config file (dev keys made with ``signer keys dev``; ``limits.max_batch_items
= 16`` so a fuzzed GenerateKeys stays small; ``server.max_message_bytes = 1 MiB``; ``admin.second_factor
= false`` so that fuzzed admin calls reach their handlers instead of stopping at the missing code).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import blspy
import grpc
import pytest
from google.protobuf import message as pb_message
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from signer.api._proto.signer.admin.v1 import admin_pb2
from signer.api._proto.tendermint.privval import service_pb2 as privval_service_pb2
from signer.api._proto.tendermint.privval import types_pb2 as privval_types
from signer.api._proto.tendermint.types import canonical_pb2
from signer.api._proto.tendermint.types import types_pb2 as tm
from signer.api._proto.v1 import (
    accountmanager_pb2,
    eth2_pb2,
    lister_pb2,
    responsestate_pb2,
    signer_pb2,
)
from signer.keys.dev import DEV_PIN, DEV_SECP256K1_ACCOUNT
from tests.e2e.harness import (
    DOMAIN_BEACON_ATTESTER,
    DOMAIN_BEACON_PROPOSER,
    DOMAIN_RANDAO,
    MAINNET_GENESIS_VALIDATORS_ROOT,
    SignerProcess,
    init_protection,
    ref_attestation_data_root,
    ref_block_header_root,
    ref_domain,
    ref_signing_root,
)
from tests.e2e.test_cometbft_e2e import delimited, secp_public_key, secp_verifies
from tests.e2e.test_security_e2e import keys_toml, make_keys

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a server, keys made by the CLI (scrypt): ~10-17 s in all

CHAIN = "fuzz-chain"
MAX_MESSAGE_BYTES = 1024 * 1024
CALL_TIMEOUT_S = 10.0
SUCCEEDED = responsestate_pb2.SUCCEEDED
STATES = {responsestate_pb2.SUCCEEDED, responsestate_pb2.DENIED, responsestate_pb2.FAILED}
ATTESTER = ref_domain(DOMAIN_BEACON_ATTESTER)
PROPOSER = ref_domain(DOMAIN_BEACON_PROPOSER)
RANDAO = ref_domain(DOMAIN_RANDAO)
MAINNET_FORK_VERSIONS = [bytes([v, 0, 0, 0]) for v in range(8)]
"""genesis .. and a margin past the latest mainnet fork: a domain of any of them is of this network."""

FILES = (signer_pb2, lister_pb2, accountmanager_pb2, privval_service_pb2, admin_pb2)
METHODS: dict[str, MethodDescriptor] = {
    f"/{service.full_name}/{method.name}": method
    for module in FILES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
}
PATHS = sorted(METHODS)

settings.register_profile(
    "fuzz-grpc",
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _class(descriptor: Descriptor) -> type[pb_message.Message]:
    return message_factory.GetMessageClass(descriptor)


# --- the server ---------------------------------------------------------------------------------


@dataclass
class Fuzzed:
    proc: SignerProcess
    channel: grpc.Channel
    bls_keys: dict[str, bytes]
    """account -> public key (BLS keys only)."""

    def call(self, path: str, body: bytes) -> tuple[bytes | None, grpc.RpcError | None]:
        method = self.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            return method(body, timeout=CALL_TIMEOUT_S), None
        except grpc.RpcError as exc:
            return None, exc


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    base = tmp_path_factory.mktemp("fuzz-grpc")
    data_dir = base / "data"
    pin_file, keys = make_keys(data_dir)
    assert secp_public_key() == keys[DEV_SECP256K1_ACCOUNT]
    config = base / "signer.toml"
    config.write_text(
        f"""
[server]
max_message_bytes = {MAX_MESSAGE_BYTES}
shutdown_grace_s = 2.0
{keys_toml(data_dir, pin_file)}
[[cometbft.chains]]
chain_id = "{CHAIN}"
account = "{DEV_SECP256K1_ACCOUNT}"

[[clients]]
name = "local"
allow_accounts = ["*"]
operations = ["sign_attestation", "sign_proposal", "sign_generic", "sign_voluntary_exit", "cometbft_vote",
              "cometbft_proposal", "account_management", "protection_import", "protection_export", "key_admin"]

[limits]
max_batch_items = 16

# The fuzzer reaches the admin handlers with one certificate and no operator codes (codes are
# single-use; the second factor has its own tests: tests/e2e/test_admin_second_factor_e2e.py).
[admin]
second_factor = false
require_approval = []
""",
        encoding="utf-8",
    )
    init_protection(config)  # keys made for this test: never signed
    proc = SignerProcess.from_config(config).start()
    try:
        channel = proc.channel(options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        bls = {name: pk for name, pk in keys.items() if len(pk) == 48}
        yield Fuzzed(proc, channel, bls)
        assert proc.running, proc.logs
        assert "Traceback" not in proc.logs, proc.logs[-5000:]
    finally:
        assert proc.terminate() == 0, proc.logs


# --- the oracle ---------------------------------------------------------------------------------


def blspy_verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        pk = blspy.G1Element.from_bytes(public_key)
        sig = blspy.G2Element.from_bytes(signature)
    except (ValueError, RuntimeError):
        return False
    return bool(blspy.PopSchemeMPL.verify(pk, message, sig))


def _network_domain(domain: bytes, domain_type: bytes) -> bool:
    """``domain`` is ``domain_type`` on this network (mainnet) under some fork version."""
    return len(domain) == 32 and any(
        domain == ref_domain(domain_type, version, MAINNET_GENESIS_VALIDATORS_ROOT) for version in MAINNET_FORK_VERSIONS
    )


def _public_key(fuzzed: Fuzzed, msg: Any) -> bytes | None:
    which = msg.WhichOneof("id")
    if which == "account":
        return fuzzed.bls_keys.get(msg.account)
    if which == "public_key":
        pk = bytes(msg.public_key)
        return pk if pk in fuzzed.bls_keys.values() else None
    return None


def expected_signing_root(fuzzed: Fuzzed, method: str, msg: Any) -> tuple[bytes, bytes] | None:  # noqa: C901 -- one dispatch over the signing methods
    """(public key, signing root) if ``msg`` is a valid request of ``method``, else None."""
    public_key = _public_key(fuzzed, msg)
    domain = bytes(msg.domain)
    if public_key is None:
        return None
    if method in ("SignBeaconAttestation", "SignBeaconAttestations"):
        if not (msg.HasField("data") and msg.data.HasField("source") and msg.data.HasField("target")):
            return None
        d = msg.data
        roots = (bytes(d.beacon_block_root), bytes(d.source.root), bytes(d.target.root))
        if any(len(r) != 32 for r in roots) or not _network_domain(domain, DOMAIN_BEACON_ATTESTER):
            return None
        if d.source.epoch > d.target.epoch:
            return None
        object_root = ref_attestation_data_root(
            d.slot, d.committee_index, roots[0], (d.source.epoch, roots[1]), (d.target.epoch, roots[2])
        )
        return public_key, ref_signing_root(object_root, domain)
    if method == "SignBeaconProposal":
        if not msg.HasField("data"):
            return None
        h = msg.data
        roots = (bytes(h.parent_root), bytes(h.state_root), bytes(h.body_root))
        if any(len(r) != 32 for r in roots) or not _network_domain(domain, DOMAIN_BEACON_PROPOSER):
            return None
        return public_key, ref_signing_root(ref_block_header_root(h.slot, h.proposer_index, *roots), domain)
    if method in ("Sign", "Multisign"):
        data = bytes(msg.data)
        if len(data) != 32 or len(domain) != 32 or domain[:4] in (DOMAIN_BEACON_PROPOSER, DOMAIN_BEACON_ATTESTER):
            return None
        if not _network_domain(domain, domain[:4]):
            return None
        return public_key, ref_signing_root(data, domain)
    return None


def check_sign_response(fuzzed: Fuzzed, method: str, request: Any, response: signer_pb2.SignResponse) -> None:
    assert response.state in STATES, f"{method}: ResponseState {response.state} says nothing"
    if not response.signature:
        return
    assert response.state == SUCCEEDED, f"{method}: a signature with state {response.state}"
    expected = expected_signing_root(fuzzed, method, request)
    assert expected is not None, f"{method}: signed an invalid request: {request}"
    public_key, signing_root = expected
    assert blspy_verifies(public_key, signing_root, bytes(response.signature)), f"{method}: bad signature: {request}"


def _canonical_block_id(block_id: tm.BlockID) -> canonical_pb2.CanonicalBlockID | None:
    """CometBFT's CanonicalizeBlockID: nil for a nil (zero) block ID."""
    psh = block_id.part_set_header
    if not block_id.hash and not psh.total and not psh.hash:
        return None
    return canonical_pb2.CanonicalBlockID(
        hash=block_id.hash,
        part_set_header=canonical_pb2.CanonicalPartSetHeader(total=psh.total, hash=psh.hash),
    )


GO_ZERO_TIME = Timestamp(seconds=-62135596800, nanos=0)
"""Go's time.Time{}: what CometBFT's non-nullable stdtime timestamp is when the field is absent."""


def _timestamp(msg: tm.Vote | tm.Proposal) -> Timestamp:
    return msg.timestamp if msg.HasField("timestamp") else GO_ZERO_TIME


def reference_vote_bytes(chain_id: str, vote: tm.Vote) -> bytes:
    canonical = canonical_pb2.CanonicalVote(
        type=vote.type, height=vote.height, round=vote.round, timestamp=_timestamp(vote), chain_id=chain_id
    )
    block_id = _canonical_block_id(vote.block_id)
    if block_id is not None:
        canonical.block_id.CopyFrom(block_id)
    return delimited(canonical.SerializeToString())


def reference_proposal_bytes(chain_id: str, proposal: tm.Proposal) -> bytes:
    canonical = canonical_pb2.CanonicalProposal(
        type=proposal.type, height=proposal.height, round=proposal.round, pol_round=proposal.pol_round,
        timestamp=_timestamp(proposal), chain_id=chain_id,
    )  # fmt: skip
    block_id = _canonical_block_id(proposal.block_id)
    if block_id is not None:
        canonical.block_id.CopyFrom(block_id)
    return delimited(canonical.SerializeToString())


def _check_remote_error(method: str, response: Any) -> None:
    assert response.HasField("error"), f"{method}: neither a result nor an error"
    assert response.error.code != 0 and response.error.description, f"{method}: unclear error {response.error}"


def check_privval_response(method: str, request: Any, response: Any) -> None:
    if method == "GetPubKey":
        if not response.HasField("error"):
            assert request.chain_id == CHAIN
            assert bytes(response.pub_key.secp256k1) == secp_public_key()
        else:
            _check_remote_error(method, response)
        return
    signed = response.vote if method == "SignVote" else response.proposal
    if not signed.signature:
        _check_remote_error(method, response)
        return
    assert not response.HasField("error"), f"{method}: a signature and an error"
    assert request.chain_id == CHAIN, f"{method}: signed for chain {request.chain_id!r}"
    assert signed.height > 0 and signed.round >= 0, f"{method}: signed an invalid height/round: {request}"
    if method == "SignVote":
        assert signed.type in (tm.SIGNED_MSG_TYPE_PREVOTE, tm.SIGNED_MSG_TYPE_PRECOMMIT), request
        sign_bytes = reference_vote_bytes(CHAIN, signed)
    else:
        assert signed.type == tm.SIGNED_MSG_TYPE_PROPOSAL, request
        assert signed.pol_round >= -1, request
        sign_bytes = reference_proposal_bytes(CHAIN, signed)
    assert secp_verifies(secp_public_key(), sign_bytes, bytes(signed.signature)), f"{method}: bad signature"


def check_answer(
    fuzzed: Fuzzed, path: str, request_bytes: bytes, answer: bytes | None, error: grpc.RpcError | None
) -> None:
    """The whole contract for one call (see the module docstring)."""
    method_descriptor = METHODS[path]
    method = method_descriptor.name
    if error is not None:
        code = error.code()
        assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK), f"{path}: {code} {error.details()!r}"
        assert code != grpc.StatusCode.DEADLINE_EXCEEDED, f"{path}: the server hung on {request_bytes[:64]!r}..."
        assert error.details(), f"{path}: {code} without details"
        return
    assert answer is not None
    response: Any = _class(method_descriptor.output_type).FromString(answer)  # the method's own message type
    request: Any = _class(method_descriptor.input_type).FromString(request_bytes)  # it parsed on the server too
    service = path.split("/")[1]
    if service == "v1.Signer":
        if method in ("Multisign", "SignBeaconAttestations"):
            assert len(response.responses) == len(request.requests), path
            for item, item_response in zip(request.requests, response.responses, strict=True):
                check_sign_response(fuzzed, method, item, item_response)
        else:
            check_sign_response(fuzzed, method, request, response)
    elif service in ("v1.Lister", "v1.AccountManager"):
        assert response.state in STATES, f"{path}: ResponseState {response.state}"
    elif service == "tendermint.privval.PrivValidatorAPI":
        check_privval_response(method, request, response)
    else:  # signer.admin.v1
        assert response.status != admin_pb2.RESPONSE_STATUS_UNSPECIFIED, f"{path}: no status"
        if response.status != admin_pb2.RESPONSE_STATUS_OK:
            assert response.message, f"{path}: status {response.status} without a message"


# --- strategies ---------------------------------------------------------------------------------

_INT_RANGES: dict[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

random_bytes = st.one_of(
    st.binary(max_size=100),
    st.sampled_from([0, 1, 20, 31, 32, 33, 47, 48, 49, 64, 96, 97]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)
    ),
)


def _scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type in _INT_RANGES:
        low, high = _INT_RANGES[field.type]
        return st.integers(low, high)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.text(max_size=80), st.sampled_from(["dev/0", "dev", CHAIN, "", "*", "dev/.*"]))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return random_bytes
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-(2**31), 2**31 - 1))
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if field.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
        assert field.message_type is not None
        return messages(field.message_type, depth + 1)
    raise AssertionError(f"unhandled field type {field.type} of {field.full_name}")


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[pb_message.Message]:  # noqa: C901 -- one dispatch over the protobuf field types
    """Messages of ``descriptor`` with random values; any field may be missing; nesting bounded."""
    cls = _class(descriptor)
    if depth > 3:
        return st.just(cls())
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, val = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            optional[field.name] = st.dictionaries(_scalar(key, depth), _scalar(val, depth), max_size=2)
        elif field.is_repeated:
            optional[field.name] = st.lists(_scalar(field, depth), max_size=3)
        else:
            optional[field.name] = _scalar(field, depth)

    def build(values: dict[str, Any]) -> pb_message.Message:
        msg = cls()
        for name, value in values.items():
            field = descriptor.fields_by_name[name]
            target = getattr(msg, name) if field.is_repeated or field.message_type is not None else None
            if isinstance(value, dict):
                target.update(value)  # type: ignore[union-attr]
            elif isinstance(value, list):
                if field.message_type is not None:
                    for item in value:
                        target.add().CopyFrom(item)  # type: ignore[union-attr]
                else:
                    target.extend(value)  # type: ignore[union-attr]
            elif isinstance(value, pb_message.Message):
                target.CopyFrom(value)  # type: ignore[union-attr]
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=optional).map(build)


# Near-valid signing requests: each part right or wrong on its own.
_accounts = st.sampled_from(["dev/0", "dev/1", "dev/2", "dev/3", "other/0", "nobody/0", "dev/cometbft-secp256k1", ""])
_roots = st.one_of(st.binary(min_size=32, max_size=32), random_bytes)
_epochs = st.one_of(st.integers(0, 2**20), st.integers(0, 2**64 - 1))


def _domain(right: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.just(right), st.sampled_from([ATTESTER, PROPOSER, RANDAO]), random_bytes)


def _attestation() -> st.SearchStrategy[signer_pb2.SignBeaconAttestationRequest]:
    def build(  # noqa: PLR0917 - one argument per strategy of st.builds
        account: str, domain: bytes, slot: int, index: int, roots: list[bytes], epochs: list[int], drop: str
    ) -> signer_pb2.SignBeaconAttestationRequest:
        data = eth2_pb2.AttestationData(
            slot=slot, committee_index=index, beacon_block_root=roots[0],
            source=eth2_pb2.Checkpoint(epoch=min(epochs), root=roots[1]),
            target=eth2_pb2.Checkpoint(epoch=max(epochs), root=roots[2]),
        )  # fmt: skip
        if drop in ("source", "target"):
            data.ClearField(drop)
        request = signer_pb2.SignBeaconAttestationRequest(account=account, domain=domain, data=data)
        if drop == "data":
            request.ClearField("data")
        return request

    return st.builds(
        build, _accounts, _domain(ATTESTER), _epochs, st.integers(0, 2**64 - 1),
        st.lists(_roots, min_size=3, max_size=3), st.lists(_epochs, min_size=2, max_size=2),
        st.sampled_from(["", "", "", "source", "target", "data"]),
    )  # fmt: skip


def _proposal() -> st.SearchStrategy[signer_pb2.SignBeaconProposalRequest]:
    def build(account: str, domain: bytes, slot: int, index: int, roots: list[bytes]) -> Any:
        header = eth2_pb2.BeaconBlockHeader(
            slot=slot, proposer_index=index, parent_root=roots[0], state_root=roots[1], body_root=roots[2]
        )
        return signer_pb2.SignBeaconProposalRequest(account=account, domain=domain, data=header)

    return st.builds(build, _accounts, _domain(PROPOSER), _epochs, st.integers(0, 2**64 - 1),
                     st.lists(_roots, min_size=3, max_size=3))  # fmt: skip


def _generic() -> st.SearchStrategy[signer_pb2.SignRequest]:
    return st.builds(
        lambda account, data, domain: signer_pb2.SignRequest(account=account, data=data, domain=domain),
        _accounts, _roots, _domain(RANDAO),
    )  # fmt: skip


near_valid: st.SearchStrategy[tuple[str, pb_message.Message]] = st.one_of(
    _attestation().map(lambda m: ("/v1.Signer/SignBeaconAttestation", m)),
    _proposal().map(lambda m: ("/v1.Signer/SignBeaconProposal", m)),
    _generic().map(lambda m: ("/v1.Signer/Sign", m)),
    st.lists(_attestation(), max_size=4).map(
        lambda ms: ("/v1.Signer/SignBeaconAttestations", signer_pb2.SignBeaconAttestationsRequest(requests=ms))
    ),
    st.lists(_generic(), max_size=4).map(lambda ms: ("/v1.Signer/Multisign", signer_pb2.MultisignRequest(requests=ms))),
)


def structured(path: str) -> st.SearchStrategy[tuple[str, pb_message.Message]]:
    return messages(METHODS[path].input_type).map(lambda m: (path, m))


# --- the tests ----------------------------------------------------------------------------------


def _run(fuzzed: Fuzzed, path: str, body: bytes, *, in_hypothesis: bool = True) -> None:
    answer, error = fuzzed.call(path, body)
    check_answer(fuzzed, path, body, answer, error)
    if not in_hypothesis:
        return
    # --hypothesis-show-statistics shows what the run reached
    if error is not None:
        event(f"gRPC {error.code().name}")
    elif path.startswith("/v1.Signer/") and answer is not None and b"\x12\x60" in answer:
        event("OK with a signature")
    else:
        event("OK")


@settings(settings.get_profile("fuzz-grpc"), max_examples=70)
@given(path=st.sampled_from(PATHS), body=st.one_of(st.binary(max_size=600), st.binary(min_size=1, max_size=8)))
def test_random_bytes_on_every_method(fuzzed: Fuzzed, path: str, body: bytes) -> None:
    _run(fuzzed, path, body)


@settings(settings.get_profile("fuzz-grpc"), max_examples=70)
@given(case=st.sampled_from(PATHS).flatmap(structured))
def test_structurally_valid_messages_with_random_values(fuzzed: Fuzzed, case: tuple[str, pb_message.Message]) -> None:
    path, msg = case
    _run(fuzzed, path, msg.SerializeToString())


@settings(settings.get_profile("fuzz-grpc"), max_examples=60)
@given(case=near_valid)
def test_near_valid_signing_requests(fuzzed: Fuzzed, case: tuple[str, pb_message.Message]) -> None:
    path, msg = case
    _run(fuzzed, path, msg.SerializeToString())


def test_the_oracle_sees_signatures(fuzzed: Fuzzed) -> None:
    """The near-valid generator does reach signing: a valid request signs and passes the oracle,
    and the oracle refuses that signature for a request that differs from it."""
    data = hashlib.sha256(b"oracle").digest()
    request = signer_pb2.SignRequest(account="dev/3", data=data, domain=RANDAO)
    answer, error = fuzzed.call("/v1.Signer/Sign", request.SerializeToString())
    assert error is None and answer is not None
    response = signer_pb2.SignResponse.FromString(answer)
    assert response.state == SUCCEEDED and response.signature
    check_sign_response(fuzzed, "Sign", request, response)
    other = signer_pb2.SignRequest(account="dev/2", data=data, domain=RANDAO)
    with pytest.raises(AssertionError):
        check_sign_response(fuzzed, "Sign", other, response)
    forbidden = signer_pb2.SignRequest(account="dev/3", data=data, domain=ATTESTER)
    with pytest.raises(AssertionError):
        check_sign_response(fuzzed, "Sign", forbidden, response)


@pytest.mark.parametrize("path", PATHS)
def test_oversized_message_is_refused_clearly(fuzzed: Fuzzed, path: str) -> None:
    body = b"\x0a" + b"\xff" * (MAX_MESSAGE_BYTES + 1024)
    answer, error = fuzzed.call(path, body)
    assert answer is None and error is not None
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (error.code(), error.details())
    assert error.details()


def test_server_survives_the_fuzzing(fuzzed: Fuzzed) -> None:
    """Runs last in this module: still serving, still signing, nothing crashed."""
    health = health_pb2_grpc.HealthStub(fuzzed.channel)
    for service in ("", "v1.Signer", "tendermint.privval.PrivValidatorAPI"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT_S)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    assert fuzzed.proc.running
    # The fuzzer may have locked dev/0 on the way (AccountManager/Lock takes only a name, and "dev/0"
    # is one of the strings it samples): that is the signer obeying a permitted call, not damage.
    # Unlocking it with its passphrase must work, and then it must sign.
    unlock = accountmanager_pb2.UnlockAccountRequest(account="dev/0", passphrase=DEV_PIN.encode())
    answer, error = fuzzed.call("/v1.AccountManager/Unlock", unlock.SerializeToString())
    assert error is None and answer is not None
    assert accountmanager_pb2.UnlockAccountResponse.FromString(answer).state == SUCCEEDED
    data = hashlib.sha256(b"after the fuzzing").digest()
    request = signer_pb2.SignRequest(account="dev/0", data=data, domain=RANDAO)
    answer, error = fuzzed.call("/v1.Signer/Sign", request.SerializeToString())
    assert error is None and answer is not None
    response = signer_pb2.SignResponse.FromString(answer)
    assert response.state == SUCCEEDED
    assert blspy_verifies(fuzzed.bls_keys["dev/0"], ref_signing_root(data, RANDAO), bytes(response.signature))
    vote = privval_types.SignVoteRequest(
        chain_id=CHAIN,
        vote=tm.Vote(type=tm.SIGNED_MSG_TYPE_PREVOTE, height=2**62, round=0, validator_address=b"\x01" * 20),
    )
    answer, error = fuzzed.call("/tendermint.privval.PrivValidatorAPI/SignVote", vote.SerializeToString())
    assert error is None and answer is not None
    check_privval_response("SignVote", vote, privval_types.SignedVoteResponse.FromString(answer))
    assert "Traceback" not in fuzzed.proc.logs, fuzzed.proc.logs[-5000:]


U64_MAX = 2**64 - 1


def _edge_cases() -> list[tuple[str, str, pb_message.Message]]:
    def attestation(account: str, slot: int, source: int, target: int) -> signer_pb2.SignBeaconAttestationRequest:
        r = hashlib.sha256(f"edge{slot}{source}{target}".encode()).digest()
        return signer_pb2.SignBeaconAttestationRequest(
            account=account, domain=ATTESTER,
            data=eth2_pb2.AttestationData(slot=slot, committee_index=U64_MAX, beacon_block_root=r,
                                          source=eth2_pb2.Checkpoint(epoch=source, root=r),
                                          target=eth2_pb2.Checkpoint(epoch=target, root=r)),
        )  # fmt: skip

    r = hashlib.sha256(b"edge").digest()
    vote = tm.Vote(type=tm.SIGNED_MSG_TYPE_PRECOMMIT, height=2**63 - 1, round=2**31 - 1,
                   timestamp=Timestamp(seconds=2**63 - 1, nanos=2**31 - 1))  # fmt: skip
    return [
        ("u64-max-epochs", "/v1.Signer/SignBeaconAttestation", attestation("dev/1", U64_MAX, U64_MAX - 1, U64_MAX)),
        ("i64-max-epochs", "/v1.Signer/SignBeaconAttestation", attestation("dev/2", 2**63, 2**63 - 1, 2**63)),
        ("u64-max-slot", "/v1.Signer/SignBeaconProposal", signer_pb2.SignBeaconProposalRequest(
            account="dev/1", domain=PROPOSER, data=eth2_pb2.BeaconBlockHeader(
                slot=U64_MAX, proposer_index=U64_MAX, parent_root=r, state_root=r, body_root=r))),
        ("max-height-round-time", "/tendermint.privval.PrivValidatorAPI/SignVote",
         privval_types.SignVoteRequest(chain_id=CHAIN, vote=vote)),
        ("negative-height", "/tendermint.privval.PrivValidatorAPI/SignVote", privval_types.SignVoteRequest(
            chain_id=CHAIN, vote=tm.Vote(type=tm.SIGNED_MSG_TYPE_PREVOTE, height=-5, round=-1))),
        ("batch-over-cap", "/v1.Signer/SignBeaconAttestations", signer_pb2.SignBeaconAttestationsRequest(
            requests=[attestation("dev/3", 1, 0, 1)] * 17)),
        ("generate-over-cap", "/signer.admin.v1.KeyAdmin/GenerateKeys", admin_pb2.GenerateKeysRequest(count=2**32 - 1)),
    ]  # fmt: skip


@pytest.mark.parametrize(("path", "msg"), [c[1:] for c in _edge_cases()], ids=[c[0] for c in _edge_cases()])
def test_edge_values_get_a_clear_answer(fuzzed: Fuzzed, path: str, msg: pb_message.Message) -> None:
    _run(fuzzed, path, msg.SerializeToString(), in_hypothesis=False)
