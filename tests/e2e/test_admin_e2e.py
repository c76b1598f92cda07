"""End to end, admin API: a real ``signer serve --dev`` process spoken to over gRPC.

GenerateKeys makes a new BLS key inside the running signer; it signs through v1.Signer at once, and
the signature verifies (py_ecc) over a signing root computed independently (tests.e2e.harness).
GetStatus describes the process; DeleteKeys hands back the history and the key stops signing.
"""

from __future__ import annotations

import json

import grpc
import pytest
from eth_typing import BLSPubkey, BLSSignature
from py_ecc.bls import G2ProofOfPossession

import signer
from signer.api._proto.signer.admin.v1 import admin_pb2, admin_pb2_grpc
from signer.api._proto.v1 import eth2_pb2, responsestate_pb2, signer_pb2, signer_pb2_grpc
from signer.api.admin import read_document
from tests.e2e.harness import (
    DOMAIN_BEACON_ATTESTER,
    SignerProcess,
    dev_signer,  # noqa: F401 - pytest fixture
    ref_attestation_data_root,
    ref_domain,
    ref_signing_root,
)

pytestmark = pytest.mark.e2e


def _attestation(
    public_key: bytes, source_epoch: int, target_epoch: int
) -> tuple[signer_pb2.SignBeaconAttestationRequest, bytes]:
    domain = ref_domain(DOMAIN_BEACON_ATTESTER)
    block_root, source_root, target_root = b"\x11" * 32, b"\x22" * 32, b"\x33" * 32
    slot = target_epoch * 32
    request = signer_pb2.SignBeaconAttestationRequest(
        public_key=public_key,
        domain=domain,
        data=eth2_pb2.AttestationData(
            slot=slot,
            committee_index=0,
            beacon_block_root=block_root,
            source=eth2_pb2.Checkpoint(epoch=source_epoch, root=source_root),
            target=eth2_pb2.Checkpoint(epoch=target_epoch, root=target_root),
        ),
    )
    data_root = ref_attestation_data_root(slot, 0, block_root, (source_epoch, source_root), (target_epoch, target_root))
    return request, ref_signing_root(data_root, domain)


def test_generate_then_sign_then_status_then_delete(dev_signer: SignerProcess) -> None:  # noqa: F811
    channel: grpc.Channel = dev_signer.channel()
    keys = admin_pb2_grpc.KeyAdminStub(channel)
    eth2 = signer_pb2_grpc.SignerStub(channel)

    before = admin_pb2_grpc.StatusStub(channel).GetStatus(admin_pb2.GetStatusRequest())
    bls_before = {c.scheme: c.count for c in before.keys_loaded}[admin_pb2.KEY_SCHEME_BLS12_381]

    generated = keys.GenerateKeys(admin_pb2.GenerateKeysRequest(count=1, wallet="e2e"))
    assert generated.status == admin_pb2.RESPONSE_STATUS_OK, generated.message
    assert generated.results[0].status == admin_pb2.ITEM_STATUS_GENERATED
    public_key = bytes(generated.results[0].public_key)
    assert len(public_key) == 48

    request, signing_root = _attestation(public_key, 7, 8)
    signed = eth2.SignBeaconAttestation(request)
    assert signed.state == responsestate_pb2.SUCCEEDED
    assert G2ProofOfPossession.Verify(BLSPubkey(public_key), signing_root, BLSSignature(signed.signature))

    status = admin_pb2_grpc.StatusStub(channel).GetStatus(admin_pb2.GetStatusRequest())
    assert status.status == admin_pb2.RESPONSE_STATUS_OK
    assert status.version == signer.__version__
    assert status.network == "mainnet"
    assert status.ready
    assert {c.scheme: c.count for c in status.keys_loaded}[admin_pb2.KEY_SCHEME_BLS12_381] == bls_before + 1
    assert status.key_module == admin_pb2.KEY_MODULE_KIND_EMULATED
    assert status.protection_store.backend == admin_pb2.STORE_BACKEND_SQLITE
    assert status.protection_store.reachable

    deleted, document = read_document(keys.DeleteKeys(admin_pb2.DeleteKeysRequest(public_keys=[public_key])))
    assert deleted.results[0].status == admin_pb2.ITEM_STATUS_DELETED
    assert deleted.slashing_protection_size == len(document)
    history = json.loads(document)["data"]
    assert history[0]["pubkey"] == "0x" + public_key.hex()
    assert history[0]["signed_attestations"] == [
        {"source_epoch": "7", "target_epoch": "8", "signing_root": "0x" + signing_root.hex()}
    ]
    assert eth2.SignBeaconAttestation(request).state == responsestate_pb2.DENIED
