"""SigningService: each invariant of docs/ARCHITECTURE.md, with the real emulated key module and the real SQLite store.

Failures are injected by subclassing the real components (a store whose check_and_record raises, a
module whose sign_many raises), never by mocks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import pytest

from signer import errors
from signer.api.auth import DevAuthorizer, PermissionAuthorizer
from signer.cometbft.canonical import vote_extension_sign_bytes
from signer.cometbft.messages import BlockID, PartSetHeader, SignedMsgType, Timestamp, Vote
from signer.config import ClientConfig
from signer.crypto import bls, ed25519, secp256k1
from signer.eth2.containers import AttestationData, BeaconBlockHeader, Checkpoint
from signer.eth2.networks import MAINNET, SEPOLIA
from signer.eth2.signing import DomainType, compute_signing_root
from signer.keys.dev import (
    DEV_ED25519_ACCOUNT,
    DEV_SECP256K1_ACCOUNT,
    dev_bls_secret,
    dev_ed25519_secret,
    dev_secp256k1_secret,
)
from signer.keys.emulated import MIN_SCRYPT_N
from signer.keys.keyring import KeyRing
from signer.protection.sqlite import SqliteStore
from signer.service import (
    AttestationRequest,
    ConsensusRequest,
    GenericRequest,
    KeyRef,
    ProposalRequest,
    SigningService,
    SignRequest,
)
from signer.types import (
    LOCAL_CLIENT,
    AttestationCheck,
    ClientIdentity,
    NullMonitor,
    ProtectionCheck,
    Scheme,
    Verdict,
)
from tests.fakes import CountingModule
from tests.stores import keys_never_signed

PIN = "unit-test-module-pin"
KEYS = 4
SECRETS = [dev_bls_secret(i) for i in range(KEYS)]
ALL_SECRETS = [*SECRETS, dev_secp256k1_secret(), dev_ed25519_secret()]
ATTESTER = MAINNET.domain(DomainType.BEACON_ATTESTER, 0)
PROPOSER = MAINNET.domain(DomainType.BEACON_PROPOSER, 0)
RANDAO = MAINNET.domain(DomainType.RANDAO, 0)
CHAINS = {"chain-secp": DEV_SECP256K1_ACCOUNT, "chain-ed": DEV_ED25519_ACCOUNT, "chain-bls": "v/0"}


class FailingStore(SqliteStore):
    """The real SQLite store; ``fail`` makes check_and_record raise it (nothing is recorded)."""

    fail: BaseException | None = None

    def check_and_record(self, checks: Sequence[ProtectionCheck]) -> list[Verdict]:
        if self.fail is not None:
            raise self.fail
        return super().check_and_record(checks)


@pytest.fixture
def module(tmp_path: Path) -> CountingModule:
    mod = CountingModule(tmp_path / "keys", PIN, create=True, scrypt_n=MIN_SCRYPT_N)
    items = [(f"v/{i}", Scheme.BLS, s) for i, s in enumerate(SECRETS)]
    items += [(DEV_SECP256K1_ACCOUNT, Scheme.SECP256K1, dev_secp256k1_secret())]
    items += [(DEV_ED25519_ACCOUNT, Scheme.ED25519, dev_ed25519_secret())]
    mod.import_secrets(items)
    return mod


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FailingStore]:
    s = FailingStore(tmp_path / "protection.sqlite", MAINNET.genesis_validators_root)
    keys_never_signed(s)
    yield s
    s.close()


@pytest.fixture
def service(module: CountingModule, store: FailingStore) -> SigningService:
    return SigningService(MAINNET, KeyRing(module, chains=CHAINS), store)


def cp(epoch: int) -> Checkpoint:
    return Checkpoint(epoch=epoch, root=bytes([epoch % 256]) * 32)


def att(i: int, source: int, target: int, block: int = 0, domain: bytes = ATTESTER) -> AttestationRequest:
    data = AttestationData(
        slot=target * 32, index=0, beacon_block_root=bytes([block]) * 32, source=cp(source), target=cp(target)
    )
    return AttestationRequest(KeyRef(account=f"v/{i}"), domain, data)


class _Refusable(Protocol):
    """What every service outcome has: the refusal, if any."""

    @property
    def error(self) -> errors.SignerError | None: ...


def errors_of(outcomes: Sequence[_Refusable]) -> list[type[errors.SignerError] | None]:
    return [type(o.error) if o.error is not None else None for o in outcomes]


# --- a lost protection history (issue 13.2) -------------------------------------------------------


def test_store_not_initialized_refuses_every_item_saying_what_to_do_and_signs_nothing(
    module: CountingModule, tmp_path: Path
) -> None:
    fresh = SqliteStore(tmp_path / "fresh.sqlite", MAINNET.genesis_validators_root)  # new: a lost history
    try:
        svc = SigningService(MAINNET, KeyRing(module, chains=CHAINS), fresh)
        assert not svc.protection_initialized()
        header = BeaconBlockHeader(slot=64, proposer_index=1, parent_root=b"\1" * 32, state_root=b"\2" * 32,
                                   body_root=b"\3" * 32)  # fmt: skip
        outcomes = [
            *svc.sign(LOCAL_CLIENT, [att(0, 1, 2), att(1, 1, 2)]),
            *svc.sign(LOCAL_CLIENT, [ProposalRequest(KeyRef(account="v/1"), PROPOSER, header)]),
            *svc.sign(LOCAL_CLIENT, [ConsensusRequest("chain-secp", vote(5))]),
        ]
        assert errors_of(outcomes) == [errors.ProtectionNotInitialized] * 4
        refusal = outcomes[0].error
        assert refusal is not None and "signer protection init --keys-never-signed" in refusal.message
        assert "signer protection import" in refusal.message
        assert module.signed == []
        assert fresh.export_interchange()["data"] == []  # nothing was recorded either
        # An import initializes (and its records are the history the checks see).
        public_key = bls.secret_to_public(SECRETS[0])
        fresh.import_interchange(
            {
                "metadata": {
                    "interchange_format_version": "5",
                    "genesis_validators_root": "0x" + MAINNET.genesis_validators_root.hex(),
                },
                "data": [
                    {
                        "pubkey": "0x" + public_key.hex(),
                        "signed_blocks": [],
                        "signed_attestations": [{"source_epoch": "1", "target_epoch": "2"}],
                    },
                ],
            }
        )
        assert svc.protection_initialized()
        assert errors_of(svc.sign(LOCAL_CLIENT, [att(0, 1, 2)])) == [errors.DoubleVote]
        assert svc.sign(LOCAL_CLIENT, [att(0, 2, 3), att(1, 1, 2)])[0].ok
    finally:
        fresh.close()


def test_store_that_cannot_say_whether_it_is_initialized_refuses(module: CountingModule, tmp_path: Path) -> None:
    class Unanswering(SqliteStore):
        def initialization(self) -> None:
            raise errors.ProtectionStoreError("database is gone")

    broken = Unanswering(tmp_path / "gone.sqlite", MAINNET.genesis_validators_root)
    try:
        svc = SigningService(MAINNET, KeyRing(module), broken)
        assert errors_of(svc.sign(LOCAL_CLIENT, [att(0, 1, 2)])) == [errors.ProtectionStoreError]
        assert module.signed == []
    finally:
        broken.close()


def test_keys_added_to_an_initialized_store_sign(service: SigningService, module: CountingModule) -> None:
    """Initialization is per store, not per key: a key added later (keystore import, generate) signs
    at once; its history comes with the import (ImportKeystores' slashing_protection) if it has one."""
    assert service.sign(LOCAL_CLIENT, [att(0, 1, 2)])[0].ok
    new = module.generate("late/0", Scheme.BLS)
    service.keyring.reload_keys()
    request = AttestationRequest(KeyRef(account="late/0"), ATTESTER, att(0, 1, 2).data)
    [outcome] = service.sign(LOCAL_CLIENT, [request])
    assert outcome.ok and outcome.key is not None and outcome.key.public_key == new.public_key


# --- invariant 1: no signature without a committed record ---------------------------------------


@pytest.mark.parametrize("failure", [errors.ProtectionStoreError("database is gone"), RuntimeError("boom")],
                         ids=["store-error", "unexpected-exception"])  # fmt: skip
def test_store_failure_refuses_every_item_and_signs_nothing(
    service: SigningService, module: CountingModule, store: FailingStore, failure: BaseException
) -> None:
    store.fail = failure
    outcomes = service.sign(LOCAL_CLIENT, [att(i, 1, 2) for i in range(KEYS)])
    assert [o.signature for o in outcomes] == [None] * KEYS
    assert all(isinstance(o.error, errors.ProtectionStoreError) for o in outcomes)
    assert module.signed == []
    store.fail = None  # and nothing was recorded: the same attestations sign once the store is back
    assert all(o.ok for o in service.sign(LOCAL_CLIENT, [att(i, 1, 2) for i in range(KEYS)]))


def test_record_is_committed_before_the_signature_is_returned(service: SigningService, tmp_path: Path) -> None:
    [outcome] = service.sign(LOCAL_CLIENT, [att(0, 1, 2)])
    assert outcome.ok
    other = SqliteStore(tmp_path / "protection.sqlite", MAINNET.genesis_validators_root)  # a second connection
    try:
        assert outcome.key is not None
        request = att(0, 1, 2, block=9)
        root = compute_signing_root(request.data.hash_tree_root(), ATTESTER)
        [verdict] = other.check_and_record([AttestationCheck(outcome.key.public_key, 1, 2, root)])
        assert isinstance(verdict.refusal, errors.DoubleVote)
    finally:
        other.close()


# --- invariant 2: every failure refuses --------------------------------------------------------


@pytest.mark.parametrize(
    "failure", [errors.KeyModuleError("token removed"), ValueError("odd")], ids=["module-error", "unexpected"]
)
def test_module_failure_refuses_and_the_record_stays(
    service: SigningService, module: CountingModule, failure: BaseException
) -> None:
    module.fail = failure
    outcomes = service.sign(LOCAL_CLIENT, [att(0, 1, 2), att(1, 1, 2)])
    assert [o.signature for o in outcomes] == [None, None]
    assert all(isinstance(o.error, errors.KeyModuleError) for o in outcomes)
    module.fail = None
    # The decision was recorded (safe): a conflicting vote is refused, the identical one signs.
    assert errors_of(service.sign(LOCAL_CLIENT, [att(0, 1, 2, block=5)])) == [errors.DoubleVote]
    assert service.sign(LOCAL_CLIENT, [att(0, 1, 2)])[0].ok


def test_store_answering_the_wrong_number_of_verdicts_refuses(
    service: SigningService, module: CountingModule, store: FailingStore
) -> None:
    class ShortStore(FailingStore):
        def check_and_record(self, checks: Sequence[ProtectionCheck]) -> list[Verdict]:
            return super().check_and_record(checks)[:-1]

    short = ShortStore(store.path, MAINNET.genesis_validators_root)
    try:
        svc = SigningService(MAINNET, KeyRing(module), short)
        outcomes = svc.sign(LOCAL_CLIENT, [att(0, 1, 2), att(1, 1, 2)])
        assert errors_of(outcomes) == [errors.InternalError, errors.InternalError]
        assert module.signed == []
    finally:
        short.close()


# --- invariant 3: one outcome per item ----------------------------------------------------------


def test_one_outcome_per_item_in_order(service: SigningService) -> None:
    assert service.sign(LOCAL_CLIENT, [att(1, 1, 2)])[0].ok
    batch = [
        att(0, 1, 2),  # fine
        att(1, 1, 2, block=7),  # double vote
        AttestationRequest(KeyRef(account="nobody/0"), ATTESTER, att(2, 1, 2).data),  # unknown key
        att(2, 1, 2, domain=b"\x01" * 5),  # malformed domain
        att(3, 5, 4),  # source after target
    ]
    outcomes = service.sign(LOCAL_CLIENT, batch)
    assert errors_of(outcomes) == [
        None,
        errors.DoubleVote,
        errors.UnknownKey,
        errors.MalformedRequest,
        errors.SourceExceedsTarget,
    ]
    assert outcomes[0].key is not None
    signed_root = compute_signing_root(batch[0].data.hash_tree_root(), ATTESTER)
    assert outcomes[0].signature is not None
    assert bls.verify(outcomes[0].key.public_key, signed_root, outcomes[0].signature)
    assert outcomes[0].key.public_key == bls.secret_to_public(SECRETS[0])


def test_one_batch_mixes_every_request_type_in_one_transaction(
    service: SigningService, store: FailingStore, module: CountingModule
) -> None:
    calls: list[int] = []
    record = store.check_and_record

    def counted(checks: Sequence[ProtectionCheck]) -> list[Verdict]:
        calls.append(len(checks))
        return record(checks)

    store.check_and_record = counted  # type: ignore[method-assign]
    header = BeaconBlockHeader(slot=64, proposer_index=1, parent_root=b"\1" * 32, state_root=b"\2" * 32,
                               body_root=b"\3" * 32)  # fmt: skip
    batch: list[SignRequest] = [
        att(0, 1, 2),
        ProposalRequest(KeyRef(account="v/1"), PROPOSER, header),
        GenericRequest(KeyRef(account="v/2"), RANDAO, b"\5" * 32),
        ConsensusRequest("chain-secp", vote(3)),
    ]
    outcomes = service.sign(LOCAL_CLIENT, batch)
    assert [o.ok for o in outcomes] == [True, True, True, True]
    assert calls == [3]  # the generic request has no history to check
    assert [o.subject for o in outcomes] == [
        {"source_epoch": 1, "target_epoch": 2},
        {"slot": 64},
        None,
        {"height": 3, "round": 0, "step": 2},
    ]
    assert [o.key.name for o in outcomes if o.key is not None] == ["v/0", "v/1", "v/2", DEV_SECP256K1_ACCOUNT]
    assert len(module.signed) == 4


def test_a_failure_while_preparing_refuses_only_its_item(module: CountingModule, store: FailingStore) -> None:
    class BrokenFor:
        """An authorizer with a bug for one key: it raises something that is not a SignerError."""

        def authorize(self, client: ClientIdentity, operation: object, key: object) -> None:
            if getattr(key, "name", None) == "v/1":
                raise RuntimeError("a bug")

        def permits(self, client: ClientIdentity, operation: object, key: object) -> bool:
            return True

    service = SigningService(MAINNET, KeyRing(module), store, authorizer=BrokenFor())
    outcomes = service.sign(LOCAL_CLIENT, [att(0, 1, 2), att(1, 1, 2)])
    assert errors_of(outcomes) == [None, errors.InternalError]
    assert "RuntimeError" in str(outcomes[1].error) and "a bug" not in str(outcomes[1].error)
    assert len(module.signed) == 1


def test_an_attestation_needs_the_sign_attestation_permission(module: CountingModule, store: FailingStore) -> None:
    clients = (
        ClientConfig(name="vc", allow_accounts=("*",), operations=("sign_generic",)),
        ClientConfig(name="attester", allow_accounts=("v/0",), operations=("sign_attestation",)),
    )
    service = SigningService(MAINNET, KeyRing(module), store, authorizer=PermissionAuthorizer(clients))
    refused = service.sign(ClientIdentity("vc"), [att(0, 1, 2)])
    assert errors_of(refused) == [errors.AccessDenied]
    assert errors_of(service.sign(ClientIdentity("attester"), [att(1, 1, 2)])) == [errors.AccessDenied]
    assert module.signed == []
    # Nothing was recorded for the refused one: the same vote signs for a client that may sign it.
    assert service.sign(ClientIdentity("attester"), [att(0, 1, 2)])[0].ok


def test_a_key_retired_after_commit_is_refused_not_signed(service: SigningService, module: CountingModule) -> None:
    staged = service.stage(LOCAL_CLIENT, [att(0, 1, 2), att(1, 1, 2)])
    retired = service.keyring.lookup(KeyRef(account="v/0"))
    service.keyring.retire_keys([retired.public_key])
    outcomes = staged.finish()
    assert errors_of(outcomes) == [errors.UnknownKey, None]
    assert "removed while the request was in flight" in str(outcomes[0].error)
    assert outcomes[0].subject == {"source_epoch": 1, "target_epoch": 2}
    assert [pk for pk, _ in module.signed] == [service.keyring.lookup(KeyRef(account="v/1")).public_key]


def test_duplicate_key_in_one_batch_refused(service: SigningService, module: CountingModule) -> None:
    outcomes = service.sign(LOCAL_CLIENT, [att(0, 1, 2), att(0, 2, 3), att(1, 1, 2)])
    assert errors_of(outcomes) == [None, errors.MalformedRequest, None]
    assert "more than once" in str(outcomes[1].error)
    assert len(module.signed) == 2
    # The refused item left no record: it signs on its own afterwards.
    assert service.sign(LOCAL_CLIENT, [att(0, 2, 3)])[0].ok


# --- invariant 4: identical re-sign -------------------------------------------------------------


def test_identical_resign_returns_the_same_signature(service: SigningService) -> None:
    first = service.sign(LOCAL_CLIENT, [att(0, 1, 2)])[0]
    again = service.sign(LOCAL_CLIENT, [att(0, 1, 2)])[0]
    assert first.ok and again.ok
    assert first.signature == again.signature
    header = BeaconBlockHeader(slot=64, proposer_index=1, parent_root=b"\1" * 32, state_root=b"\2" * 32,
                               body_root=b"\3" * 32)  # fmt: skip
    p1 = service.sign(LOCAL_CLIENT, [ProposalRequest(KeyRef(account="v/1"), PROPOSER, header)])[0]
    p2 = service.sign(LOCAL_CLIENT, [ProposalRequest(KeyRef(account="v/1"), PROPOSER, header)])[0]
    assert p1.ok and p1.signature == p2.signature


def vote(height: int, block: int = 1, seconds: int = 1_700_000_000) -> Vote:
    return Vote(
        type=SignedMsgType.PREVOTE,
        height=height,
        round=0,
        block_id=BlockID(hash=bytes([block]) * 32, part_set_header=PartSetHeader(total=1, hash=b"\x09" * 32)),
        timestamp=Timestamp(seconds=seconds),
        validator_address=b"\1" * 20,
        validator_index=0,
    )


def test_consensus_repeat_and_timestamp_only_change(service: SigningService) -> None:
    first = service.sign(LOCAL_CLIENT, [ConsensusRequest("chain-secp", vote(5))])[0]
    assert first.ok
    same = service.sign(LOCAL_CLIENT, [ConsensusRequest("chain-secp", vote(5))])[0]
    assert same.signature == first.signature and same.timestamp is None
    later = service.sign(LOCAL_CLIENT, [ConsensusRequest("chain-secp", vote(5, seconds=1_700_000_009))])[0]
    assert later.signature == first.signature
    assert later.timestamp == (1_700_000_000, 0)
    other = service.sign(LOCAL_CLIENT, [ConsensusRequest("chain-secp", vote(5, block=2))])[0]
    assert isinstance(other.error, errors.ConflictingConsensusMessage)


@pytest.mark.parametrize("chain", ["chain-secp", "chain-ed"])
def test_precommit_extension_is_signed_with_the_chain_key(service: SigningService, chain: str) -> None:
    precommit = replace(vote(9), type=SignedMsgType.PRECOMMIT, extension=b"vote extension")
    [outcome] = service.sign(LOCAL_CLIENT, [ConsensusRequest(chain, precommit)])
    assert outcome.ok, outcome.error
    assert outcome.key is not None and outcome.extension_signature is not None
    ext_bytes = vote_extension_sign_bytes(chain, precommit)
    if outcome.key.scheme == Scheme.SECP256K1:
        assert secp256k1.verify_digest(outcome.key.public_key, secp256k1.sha256(ext_bytes), outcome.extension_signature)
    else:
        assert ed25519.verify(outcome.key.public_key, ext_bytes, outcome.extension_signature)


class Reports(NullMonitor):
    """A Monitor that keeps what the signing step reports."""

    def __init__(self) -> None:
        self.signed_counts: list[tuple[Scheme, int]] = []
        self.batches: list[int] = []

    def signed(self, scheme: Scheme, count: int, duration_s: float) -> None:
        self.signed_counts.append((scheme, count))

    def batch(self, size: int) -> None:
        self.batches.append(size)


def test_signatures_are_reported_per_scheme_and_per_signing_call(module: CountingModule, store: FailingStore) -> None:
    reports = Reports()
    service = SigningService(MAINNET, KeyRing(module, chains=CHAINS), store, monitor=reports)
    precommit = replace(vote(9), type=SignedMsgType.PRECOMMIT, extension=b"vote extension")
    batch: list[SignRequest] = [
        att(0, 1, 2),
        att(1, 1, 2),
        ConsensusRequest("chain-secp", precommit),
        ConsensusRequest("chain-ed", vote(9)),
    ]
    assert all(o.ok for o in service.sign(LOCAL_CLIENT, batch))
    # The messages in one call (2 BLS, 1 secp256k1, 1 ed25519), then the one vote extension.
    assert sorted(reports.signed_counts[:3]) == [(Scheme.BLS, 2), (Scheme.ED25519, 1), (Scheme.SECP256K1, 1)]
    assert reports.signed_counts[3:] == [(Scheme.SECP256K1, 1)]
    assert reports.batches == [4, 1]


# --- the other refusals --------------------------------------------------------------------------


def test_forbidden_domains(service: SigningService, module: CountingModule) -> None:
    generic = [GenericRequest(KeyRef(account="v/0"), d, b"\5" * 32) for d in (PROPOSER, ATTESTER)]
    for request in generic:
        assert errors_of(service.sign(LOCAL_CLIENT, [request])) == [errors.ForbiddenDomain]
    assert errors_of(service.sign(LOCAL_CLIENT, [att(0, 1, 2, domain=RANDAO)])) == [errors.ForbiddenDomain]
    header = BeaconBlockHeader(slot=64, proposer_index=1, parent_root=b"\1" * 32, state_root=b"\2" * 32,
                               body_root=b"\3" * 32)  # fmt: skip
    refused = service.sign(LOCAL_CLIENT, [ProposalRequest(KeyRef(account="v/0"), ATTESTER, header)])
    assert errors_of(refused) == [errors.ForbiddenDomain]
    assert module.signed == []
    assert service.sign(LOCAL_CLIENT, [GenericRequest(KeyRef(account="v/0"), RANDAO, b"\5" * 32)])[0].ok


def test_deposit_is_signed_only_under_its_own_permission(module: CountingModule, store: FailingStore) -> None:
    """A deposit names the withdrawal credentials: sign_generic never covers DOMAIN_DEPOSIT (a
    compromised validator client could fund a not-yet-deposited key with its own credentials)."""
    clients = (
        ClientConfig(name="vc", allow_accounts=("*",), operations=("sign_generic", "sign_voluntary_exit")),
        ClientConfig(name="depositor", allow_accounts=("*",), operations=("sign_deposit",)),
    )
    service = SigningService(MAINNET, KeyRing(module), store, authorizer=PermissionAuthorizer(clients))
    deposit = GenericRequest(KeyRef(account="v/0"), MAINNET.domain(DomainType.DEPOSIT, 0), b"\5" * 32)
    randao = GenericRequest(KeyRef(account="v/0"), RANDAO, b"\5" * 32)

    refused = service.sign(ClientIdentity("vc"), [deposit])
    assert errors_of(refused) == [errors.AccessDenied]
    assert "may not sign_deposit" in refused[0].error.message  # type: ignore[union-attr]
    assert module.signed == []
    assert service.sign(ClientIdentity("vc"), [randao])[0].ok

    signed = service.sign(ClientIdentity("depositor"), [deposit])
    assert signed[0].ok
    root = compute_signing_root(b"\5" * 32, deposit.domain)
    assert bls.verify(bls.secret_to_public(SECRETS[0]), root, signed[0].signature)  # type: ignore[arg-type]
    assert errors_of(service.sign(ClientIdentity("depositor"), [randao])) == [errors.AccessDenied]


def test_dev_signer_signs_deposits_of_the_public_dev_keys(module: CountingModule, store: FailingStore) -> None:
    """--dev (with mTLS: DevAuthorizer) allows deposits for the dev keys: their secrets come from a
    published seed, so refusing would protect nothing and would break local devnets."""
    module.import_secret("dev/0", Scheme.BLS, dev_bls_secret(KEYS))
    service = SigningService(MAINNET, KeyRing(module), store, authorizer=DevAuthorizer())
    deposit = MAINNET.domain(DomainType.DEPOSIT, 0)
    assert service.sign(ClientIdentity("any"), [GenericRequest(KeyRef(account="dev/0"), deposit, b"\5" * 32)])[0].ok
    refused = service.sign(ClientIdentity("any"), [GenericRequest(KeyRef(account="v/0"), deposit, b"\5" * 32)])
    assert errors_of(refused) == [errors.AccessDenied]


def test_wrong_network(service: SigningService, module: CountingModule) -> None:
    sepolia = SEPOLIA.domain(DomainType.BEACON_ATTESTER, 0)
    assert errors_of(service.sign(LOCAL_CLIENT, [att(0, 1, 2, domain=sepolia)])) == [errors.WrongNetwork]
    randao = SEPOLIA.domain(DomainType.RANDAO, 0)
    generic = service.sign(LOCAL_CLIENT, [GenericRequest(KeyRef(account="v/0"), randao, b"\5" * 32)])
    assert errors_of(generic) == [errors.WrongNetwork]
    assert module.signed == []


def test_unknown_key(service: SigningService) -> None:
    by_key = AttestationRequest(KeyRef(public_key=b"\xaa" * 48), ATTESTER, att(0, 1, 2).data)
    assert errors_of(service.sign(LOCAL_CLIENT, [by_key])) == [errors.UnknownKey]
    unknown_chain = service.sign(LOCAL_CLIENT, [ConsensusRequest("no-chain", vote(1))])
    assert isinstance(unknown_chain[0].error, errors.UnknownKey)


def test_locked_key(service: SigningService) -> None:
    service.lock_account(LOCAL_CLIENT, KeyRef(account="v/0"))
    outcomes = service.sign(LOCAL_CLIENT, [att(0, 1, 2), att(1, 1, 2)])
    assert errors_of(outcomes) == [errors.KeyLocked, None]
    with pytest.raises(errors.AccessDenied):
        service.unlock_account(LOCAL_CLIENT, KeyRef(account="v/0"), "wrong pin")
    service.unlock_account(LOCAL_CLIENT, KeyRef(account="v/0"), PIN)
    assert service.sign(LOCAL_CLIENT, [att(0, 1, 2)])[0].ok


def test_scheme_mismatch(service: SigningService, module: CountingModule) -> None:
    secp = AttestationRequest(KeyRef(account=DEV_SECP256K1_ACCOUNT), ATTESTER, att(0, 1, 2).data)
    assert errors_of(service.sign(LOCAL_CLIENT, [secp])) == [errors.UnsupportedScheme]
    bls_chain = service.sign(LOCAL_CLIENT, [ConsensusRequest("chain-bls", vote(1))])
    assert isinstance(bls_chain[0].error, errors.UnsupportedScheme)
    assert module.signed == []


# --- invariant 5: no secret in any error message or log ------------------------------------------


def test_no_secret_in_errors_or_logs(
    service: SigningService, module: CountingModule, store: FailingStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []

    def collect(outcomes: Sequence[object]) -> None:
        for o in outcomes:
            error = o.error  # type: ignore[attr-defined]
            if error is not None:
                messages.extend([str(error), repr(error), error.message, repr(getattr(error, "evidence", ""))])

    collect(service.sign(LOCAL_CLIENT, [att(0, 1, 2), att(0, 1, 2), att(1, 5, 4)]))
    collect(service.sign(LOCAL_CLIENT, [att(0, 1, 2, block=3)]))
    collect(service.sign(LOCAL_CLIENT, [ConsensusRequest("chain-secp", vote(3))]))
    collect(service.sign(LOCAL_CLIENT, [ConsensusRequest("chain-secp", vote(3, block=4))]))
    collect(service.sign(LOCAL_CLIENT, [ConsensusRequest("chain-bls", vote(3))]))
    module.fail = errors.KeyModuleError("token removed")
    collect(service.sign(LOCAL_CLIENT, [att(2, 1, 2)]))
    module.fail = None
    store.fail = RuntimeError("disk on fire")
    collect(service.sign(LOCAL_CLIENT, [att(3, 1, 2)]))
    store.fail = None
    try:
        service.unlock_account(LOCAL_CLIENT, KeyRef(account="v/0"), "wrong pin")
    except errors.SignerError as exc:
        messages.append(str(exc))
    assert len(messages) >= 8
    text = "\n".join(messages + [r.getMessage() for r in caplog.records]).lower()
    for secret in ALL_SECRETS:
        assert secret.hex() not in text
        assert secret.hex()[:16] not in text
    assert PIN not in text


def test_per_key_rate_limit_refuses_only_the_key_over_its_rate(module: CountingModule, store: FailingStore) -> None:
    from signer.api.ratelimit import RateLimiter  # noqa: PLC0415 - the real limiter the app plugs in
    from signer.config import LimitsConfig, RateConfig  # noqa: PLC0415

    now = [100.0]
    limiter = RateLimiter(LimitsConfig(per_key_rate=RateConfig(per_second=1.0, burst=1)), (), clock=lambda: now[0])
    service = SigningService(MAINNET, KeyRing(module, chains=CHAINS), store, key_rate=limiter.check_key)
    first = service.sign(LOCAL_CLIENT, [att(0, 1, 2), att(1, 1, 2)])
    assert all(o.ok for o in first)
    again = service.sign(LOCAL_CLIENT, [att(0, 2, 3)])
    assert isinstance(again[0].error, errors.RateLimited)
    assert again[0].error.retry_after_s > 0
    # A refused item records nothing: after the refill the same attestation signs.
    now[0] += 1.5
    assert service.sign(LOCAL_CLIENT, [att(0, 2, 3)])[0].ok


# --- uint64 edges: a value the store cannot hold refuses its own item only ---------------------


def test_epoch_or_slot_beyond_int64_refuses_only_its_item(service: SigningService, module: CountingModule) -> None:
    """uint64 slots/epochs >= 2**63 are valid SSZ but the stores hold signed 64-bit integers. Such an
    item is refused alone (MalformedRequest, never retried); the other items of the batch sign. It
    used to refuse the whole batch with a retryable ProtectionStoreError (one bad request of a
    client's coalesced batch took every other request of it down, and the client retried forever)."""
    far = 2**63

    def far_att(i: int, source: int, target: int) -> AttestationRequest:
        data = AttestationData(slot=0, index=0, beacon_block_root=b"\x01" * 32, source=cp(source), target=cp(target))
        return AttestationRequest(KeyRef(account=f"v/{i}"), MAINNET.domain(DomainType.BEACON_ATTESTER, target), data)

    outcomes = service.sign(LOCAL_CLIENT, [att(0, 1, 2), far_att(1, far, far), far_att(2, 3, far)])
    assert errors_of(outcomes) == [None, errors.MalformedRequest, errors.MalformedRequest]
    assert "2**63-1" in str(outcomes[1].error)
    header = BeaconBlockHeader(slot=2**64 - 1, proposer_index=1, parent_root=b"\0" * 32, state_root=b"\0" * 32,
                               body_root=b"\0" * 32)  # fmt: skip
    proposer = MAINNET.domain(DomainType.BEACON_PROPOSER, MAINNET.epoch_at_slot(2**64 - 1))
    ok_header = replace(header, slot=5)
    proposals = service.sign(
        LOCAL_CLIENT,
        [
            ProposalRequest(KeyRef(account="v/0"), PROPOSER, ok_header),
            ProposalRequest(KeyRef(account="v/1"), proposer, header),
        ],
    )
    assert errors_of(proposals) == [None, errors.MalformedRequest]
    # Only the storable items were signed.
    assert len(module.signed) == 2
