"""Shares of distributed accounts as keys (issue 17.3): sealed in the key module with a sealed record,
signed through the SigningService with their slashing history under the composite key, and the
combiner (issue 17.4)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signer import errors
from signer.crypto import bls
from signer.crypto import threshold as th
from signer.distributed.accounts import FILE_NAME, DistributedAccounts
from signer.distributed.combine import Refused, threshold_sign
from signer.distributed.dkg import Endpoint
from signer.eth2.containers import AttestationData, Checkpoint
from signer.eth2.networks import MAINNET
from signer.eth2.signing import DomainType, compute_signing_root
from signer.keys.emulated import MIN_SCRYPT_N, EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.protection.sqlite import SqliteStore
from signer.service import AttestationRequest, KeyRef, SigningService
from signer.types import LOCAL_CLIENT
from tests.stores import keys_never_signed

PIN = "distributed-test-pin-0123"
PARTICIPANTS = tuple(Endpoint(i, "127.0.0.1", 9000 + i) for i in (1, 2, 3))
ATTESTER = MAINNET.domain(DomainType.BEACON_ATTESTER, 0)


@pytest.fixture
def module(tmp_path: Path) -> Iterator[EmulatedKeyModule]:
    mod = EmulatedKeyModule(tmp_path / "keys", PIN, create=True, scrypt_n=MIN_SCRYPT_N)
    yield mod
    mod.close()


@pytest.fixture
def polynomial() -> th.Polynomial:
    return th.Polynomial.random(2)


def add_share(accounts: DistributedAccounts, polynomial: th.Polynomial, participant: int = 2) -> None:
    vector = polynomial.verification_vector()
    accounts.add(
        "dist/a",
        polynomial.share(participant),
        threshold=2,
        participants=PARTICIPANTS,
        composite_public_key=vector.public_key,
        verification_vector=vector.commitments,
    )


def test_a_share_is_a_key_of_the_module_and_its_record_survives_a_restart(
    module: EmulatedKeyModule, polynomial: th.Polynomial, tmp_path: Path
) -> None:
    accounts = DistributedAccounts(module, tmp_path / "keys")
    add_share(accounts, polynomial)
    share_key = polynomial.share(2).public_key()
    composite = polynomial.verification_vector().public_key
    assert [(k.name, k.public_key) for k in module.list_keys()] == [("dist/a", share_key)]
    assert accounts.history_key(share_key) == composite
    assert accounts.key_for(composite) == share_key
    assert accounts.history_key(b"\1" * 48) == b"\1" * 48  # any other key keeps its own history

    again = DistributedAccounts(module, tmp_path / "keys")
    (account,) = again.accounts()
    assert (account.name, account.participant_id, account.threshold) == ("dist/a", 2, 2)
    assert account.participants == PARTICIPANTS
    assert account.composite_public_key == composite
    assert again.history_key(share_key) == composite


def test_an_edited_record_refuses_the_start(
    module: EmulatedKeyModule, polynomial: th.Polynomial, tmp_path: Path
) -> None:
    accounts = DistributedAccounts(module, tmp_path / "keys")
    add_share(accounts, polynomial)
    path = tmp_path / "keys" / FILE_NAME
    document = json.loads(path.read_text())
    # Point the share at another validator's history: the seal no longer verifies.
    other = th.Polynomial.random(2).verification_vector()
    document["accounts"][0]["composite_public_key"] = "0x" + other.public_key.hex()
    document["accounts"][0]["verification_vector"] = []
    path.write_text(json.dumps(document))
    with pytest.raises(errors.ModuleTampered, match="not sealed by its share"):
        DistributedAccounts(module, tmp_path / "keys")


def test_a_share_that_does_not_match_its_vector_is_refused_and_nothing_is_sealed(
    module: EmulatedKeyModule, polynomial: th.Polynomial, tmp_path: Path
) -> None:
    accounts = DistributedAccounts(module, tmp_path / "keys")
    vector = polynomial.verification_vector()
    with pytest.raises(errors.InvalidShare):
        accounts.add(
            "dist/a",
            th.Polynomial.random(2).share(2),
            threshold=2,
            participants=PARTICIPANTS,
            composite_public_key=vector.public_key,
            verification_vector=vector.commitments,
        )
    assert module.list_keys() == []


def test_a_threshold_of_half_or_less_is_refused(module: EmulatedKeyModule, tmp_path: Path) -> None:
    accounts = DistributedAccounts(module, tmp_path / "keys")
    polynomial = th.Polynomial.random(1)
    with pytest.raises(errors.InvalidThreshold):
        accounts.add(
            "dist/a",
            polynomial.share(1),
            threshold=1,
            participants=PARTICIPANTS[:2],
            composite_public_key=polynomial.verification_vector().public_key,
        )
    assert module.list_keys() == []


def test_a_record_that_cannot_be_written_leaves_no_share_behind(
    module: EmulatedKeyModule, polynomial: th.Polynomial, tmp_path: Path
) -> None:
    accounts = DistributedAccounts(module, tmp_path / "keys")
    (tmp_path / "keys" / FILE_NAME).mkdir()  # the record cannot replace a directory
    with pytest.raises(errors.KeyModuleError, match="cannot write"):
        add_share(accounts, polynomial)
    assert module.list_keys() == []
    assert accounts.accounts() == []


def test_one_signer_holds_one_share_of_an_account(
    module: EmulatedKeyModule, polynomial: th.Polynomial, tmp_path: Path
) -> None:
    accounts = DistributedAccounts(module, tmp_path / "keys")
    add_share(accounts, polynomial, participant=2)
    with pytest.raises(errors.MalformedRequest, match="already holds a share"):
        vector = polynomial.verification_vector()
        accounts.add(
            "dist/b",
            polynomial.share(3),
            threshold=2,
            participants=PARTICIPANTS,
            composite_public_key=vector.public_key,
            verification_vector=vector.commitments,
        )
    assert [k.name for k in module.list_keys()] == ["dist/a"]


def test_remove_deletes_the_share_and_its_record(
    module: EmulatedKeyModule, polynomial: th.Polynomial, tmp_path: Path
) -> None:
    accounts = DistributedAccounts(module, tmp_path / "keys")
    add_share(accounts, polynomial)
    accounts.remove(polynomial.share(2).public_key())
    assert module.list_keys() == []
    assert DistributedAccounts(module, tmp_path / "keys").accounts() == []


# --- signed through the service, history under the composite key ------------------------------


def attestation(ref: KeyRef, target: int, block: int) -> AttestationRequest:
    data = AttestationData(
        slot=target * 32,
        index=0,
        beacon_block_root=bytes([block]) * 32,
        source=Checkpoint(epoch=target - 1, root=b"\1" * 32),
        target=Checkpoint(epoch=target, root=b"\2" * 32),
    )
    return AttestationRequest(ref, ATTESTER, data)


def test_a_share_signs_under_the_history_of_its_composite_key(
    module: EmulatedKeyModule, polynomial: th.Polynomial, tmp_path: Path
) -> None:
    accounts = DistributedAccounts(module, tmp_path / "keys")
    add_share(accounts, polynomial)
    composite = polynomial.verification_vector().public_key
    share_key = polynomial.share(2).public_key()
    store = keys_never_signed(SqliteStore(tmp_path / "protection.sqlite", MAINNET.genesis_validators_root))
    try:
        service = SigningService(MAINNET, KeyRing(module, validator_keys=accounts), store)
        first = attestation(KeyRef(account="dist/a"), 5, 1)
        (signed,) = service.sign(LOCAL_CLIENT, [first])
        assert signed.signature is not None
        root = compute_signing_root(first.data.hash_tree_root(), ATTESTER)
        assert bls.verify(share_key, root, signed.signature)  # a partial signature by the share
        # Named by the composite key, the same validator: a double vote is refused.
        (double,) = service.sign(LOCAL_CLIENT, [attestation(KeyRef(public_key=composite), 5, 2)])
        assert isinstance(double.error, errors.DoubleVote)
        exported = store.export_interchange()
        assert [entry["pubkey"] for entry in exported["data"]] == ["0x" + composite.hex()]
    finally:
        store.close()


# --- the combiner ------------------------------------------------------------------------------


@pytest.fixture
def dealt() -> tuple[bytes, dict[int, th.SecretShare]]:
    polynomial = th.Polynomial.random(2)
    return polynomial.verification_vector().public_key, {i: polynomial.share(i) for i in (1, 2, 3)}


MESSAGE = b"\7" * 32


def test_the_combiner_stops_at_the_threshold_without_waiting_for_the_slowest(
    dealt: tuple[bytes, dict[int, th.SecretShare]],
) -> None:
    composite, shares = dealt
    release = threading.Event()

    def ask(i: int) -> bytes:
        if i == 3:
            release.wait(10)
        return shares[i].sign(MESSAGE)

    started = time.monotonic()
    combined = threshold_sign([1, 2, 3], 2, composite, MESSAGE, ask)
    release.set()
    assert time.monotonic() - started < 5
    assert combined.signers == (1, 2)
    assert bls.verify(composite, MESSAGE, combined.signature)


def test_the_combiner_gives_up_once_a_threshold_is_out_of_reach(
    dealt: tuple[bytes, dict[int, th.SecretShare]],
) -> None:
    composite, shares = dealt
    release = threading.Event()

    def ask(i: int) -> bytes:
        if i == 1:
            release.wait(10)
            return shares[1].sign(MESSAGE)
        raise Refused("DENIED")

    started = time.monotonic()
    with pytest.raises(errors.NotEnoughShares, match=r"participant 2: DENIED; participant 3: DENIED"):
        threshold_sign([1, 2, 3], 2, composite, MESSAGE, ask)
    release.set()
    assert time.monotonic() - started < 5


def test_the_combiner_refuses_partials_that_do_not_combine_under_the_composite_key(
    dealt: tuple[bytes, dict[int, th.SecretShare]],
) -> None:
    composite, shares = dealt
    stranger = th.Polynomial.random(2).share(2)

    def ask(i: int) -> bytes:
        return (stranger if i == 2 else shares[i]).sign(MESSAGE)

    with pytest.raises(errors.NotEnoughShares, match="do not combine"):
        threshold_sign([1, 2], 2, composite, MESSAGE, ask)


def test_the_combiner_names_a_participant_that_failed(dealt: tuple[bytes, dict[int, th.SecretShare]]) -> None:
    composite, shares = dealt

    def ask(i: int) -> bytes:
        if i == 2:
            raise ConnectionError("secret-free transport detail")
        return shares[i].sign(MESSAGE)

    combined = threshold_sign([1, 2, 3], 2, composite, MESSAGE, ask)
    assert combined.signers == (1, 3)
    assert combined.refusals == {2: "ConnectionError"}
