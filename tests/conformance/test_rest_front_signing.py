"""The REST front's sign route (signer.api.web3signer) signs exactly what the gRPC front signs for the
same message, and the root the vectors name:

* every Lodestar request (tests/vectors/lodestar) through ``Web3SignerApi.sign`` (body -> rest_models
  -> prepare -> core_request -> the batcher / sign_generic) gives the signature over Lodestar's
  signing root, byte-identical to the gRPC path's signature for the same message;
* every signing-root vector case (ssz/signing_roots) becomes the same domain request on both fronts
  (``core_request`` equals the gRPC translation of the equivalent proto), so the core computes the
  same root from it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from signer.api import eth2 as grpc_front
from signer.api._proto.v1 import eth2_pb2, signer_pb2
from signer.api.context import CallContext
from signer.api.rest import RestCall, RestContext
from signer.api.rest_models import parse_sign_request
from signer.api.web3signer import Web3SignerApi, core_request
from signer.batching import Batcher
from signer.config import NetworkConfig
from signer.crypto import bls
from signer.eth2 import network_from_config
from signer.eth2.remote_signing import prepare
from signer.service import AttestationRequest, GenericRequest, ProposalRequest, SigningService
from signer.types import LOCAL_CLIENT, NullMonitor
from tests.conformance.test_lodestar_requests import (
    SIGN_SAMPLES,
    _sign_over_grpc,
    interop_secret,
    lodestar_root,
    network_of,
    services,
)
from tests.conformance.test_rest_signing_roots import CASES, _body

_: object = services


def _api(service: SigningService) -> tuple[Web3SignerApi, Batcher, RestContext]:
    batcher = Batcher(service, window_ms=1.0)
    rest = RestContext(None, NullMonitor(), workers=1)
    api = Web3SignerApi(
        rest,
        service,
        CallContext(service, signer=batcher),
        service.network,
        readiness=lambda: (True, "ready"),
        health_checks=list,
        reload_keys=lambda client, code: [],
    )
    return api, batcher, rest


def _call(public_key: bytes, body: dict[str, Any], accept: str | None = "application/json") -> RestCall:
    return RestCall(
        client=LOCAL_CLIENT,
        request_id="conformance",
        method="Web3Signer/sign",
        path_params={"identifier": "0x" + public_key.hex()},
        query={},
        headers={"accept": accept} if accept else {},
        body=json.dumps(body).encode(),
    )


@pytest.mark.parametrize("name", sorted(SIGN_SAMPLES))
def test_rest_route_signs_lodestars_root_like_the_grpc_path(
    name: str,
    services: dict[str, SigningService],
) -> None:
    sample = SIGN_SAMPLES[name]
    network = network_of(name)
    service = services[network.name]
    public_key = bytes.fromhex(sample["path"].rsplit("/", 1)[1][2:])
    index = next(i for i in range(8) if bls.secret_to_public(interop_secret(i)) == public_key)
    api, batcher, rest = _api(service)
    try:
        response = api.sign(_call(public_key, sample["body"]))
    finally:
        batcher.close()
        rest.close()
    assert response.status_code == 200, response.body
    assert response.media_type == "application/json"
    signature = bytes.fromhex(json.loads(bytes(response.body))["signature"][2:])
    assert signature == bls.sign(interop_secret(index), lodestar_root(sample))
    # the gRPC front, for the same message, gives the same signature (re-signing identical data is allowed)
    prepared = prepare(network, parse_sign_request(json.dumps(sample["body"])))
    grpc_outcome = _sign_over_grpc(service, public_key, prepared)
    assert grpc_outcome.signature == signature


def _grpc_request(public_key: bytes, request: AttestationRequest | ProposalRequest | GenericRequest) -> object:
    """The gRPC front's domain request for the proto carrying the same message."""
    if isinstance(request, AttestationRequest):
        d = request.data
        msg = signer_pb2.SignBeaconAttestationRequest(
            public_key=public_key,
            domain=request.domain,
            data=eth2_pb2.AttestationData(
                slot=d.slot,
                committee_index=d.index,
                beacon_block_root=d.beacon_block_root,
                source=eth2_pb2.Checkpoint(epoch=d.source.epoch, root=d.source.root),
                target=eth2_pb2.Checkpoint(epoch=d.target.epoch, root=d.target.root),
            ),
        )
        return grpc_front.attestation_request(msg)
    if isinstance(request, ProposalRequest):
        h = request.header
        proposal = signer_pb2.SignBeaconProposalRequest(
            public_key=public_key,
            domain=request.domain,
            data=eth2_pb2.BeaconBlockHeader(
                slot=h.slot,
                proposer_index=h.proposer_index,
                parent_root=h.parent_root,
                state_root=h.state_root,
                body_root=h.body_root,
            ),
        )
        return grpc_front.proposal_request(proposal)
    generic = signer_pb2.SignRequest(public_key=public_key, domain=request.domain, data=request.data)
    return grpc_front.generic_request(generic)


@pytest.mark.parametrize("vector", CASES)
def test_vector_case_is_the_same_domain_request_on_both_fronts(vector: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, case = vector
    public_key = bytes(range(48))
    network = network_from_config(
        NetworkConfig(
            name="vectors",
            genesis_validators_root=doc["fork_info"]["genesis_validators_root"],
            genesis_fork_version=doc["fork_info"]["fork"]["current_version"],
        )
    )
    prepared = prepare(network, parse_sign_request(json.dumps(_body(doc, case))))
    assert "0x" + prepared.signing_root.hex() == case["signing_root"]
    request = core_request(public_key, prepared)
    assert _grpc_request(public_key, request) == request
    kind = {"ATTESTATION": AttestationRequest, "BLOCK_V2 (BeaconBlockHeader)": ProposalRequest}
    assert type(request) is kind.get(case["type"], GenericRequest)
