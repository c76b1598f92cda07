"""SigningService: the only path to a signature; the invariants (docs/ARCHITECTURE.md) live here.

One entry: ``stage(client, requests) -> Staged``, then ``Staged.finish()`` signs (``sign`` does
both). Every call is batch-shaped and answers one ``Outcome`` (``Signed`` or ``Refused``) per
request, in order:

1. prepare (per request, by its type): validate, resolve the key in the KeyRing, authorize,
   check the domain against the network, compute the message and its protection check
2. commit: refuse a second item for the same key (only a batch of more than one can name a key
   twice), then ONE ``check_and_record`` transaction for the batch, committed before any
   signature exists (invariant 1); a store failure, or a store that is not initialized (new or
   emptied: a lost history), refuses every item (invariant 2)
3. finish: the key module (or the parallel signer in front of it) signs the safe items

The batcher calls ``prepare`` and ``commit`` separately (``stage`` is the two), so each request is
prepared once, in its caller's thread, and the batcher groups by the key that step resolved.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from signer import errors
from signer.cometbft.canonical import timestamp_from_sign_bytes, vote_extension_sign_bytes
from signer.cometbft.consensus import consensus_check
from signer.cometbft.messages import Proposal as CometProposal
from signer.cometbft.messages import Vote as CometVote
from signer.crypto import secp256k1
from signer.eth2.containers import AttestationData, BeaconBlockHeader
from signer.eth2.networks import Network
from signer.eth2.signing import DomainType, compute_signing_root
from signer.keys.keyring import KeyRing
from signer.keys.module import check_account_name
from signer.passphrase import PassphraseGuard
from signer.protection.store import ConsensusSignature, ProtectionStore, validate_check
from signer.types import (
    AllowAll,
    AttestationCheck,
    Authorizer,
    BlockCheck,
    ClientIdentity,
    ConsensusCheck,
    KeyInfo,
    KeyRef,
    Monitor,
    NullMonitor,
    Operation,
    PriorSignature,
    ProtectionCheck,
    Scheme,
)

__all__ = [
    "NOT_INITIALIZED",
    "AttestationRequest",
    "ConsensusRequest",
    "GenericRequest",
    "KeyRef",
    "Outcome",
    "Prepared",
    "ProposalRequest",
    "Refused",
    "SignRequest",
    "Signed",
    "SigningService",
    "Staged",
]

ROOT_LEN = 32
DOMAIN_LEN = 32
_GATED_DOMAINS: Mapping[DomainType, Operation] = {
    DomainType.VOLUNTARY_EXIT: Operation.SIGN_VOLUNTARY_EXIT,
    DomainType.DEPOSIT: Operation.SIGN_DEPOSIT,
}
"""Domains that Sign/Multisign sign only under their own permission, not under sign_generic: an
exit ends a validator, a deposit picks the withdrawal credentials of a (new) validator."""

NOT_INITIALIZED = (
    "slashing protection is not initialized: the protection database holds no history and no "
    "declaration (a new, moved or emptied database is a lost history, not a fresh start). Import the "
    "keys' slashing-protection history (signer protection import FILE, or admin ImportInterchange), "
    "or, only if these keys have never signed anything, declare it once: "
    "signer protection init --keys-never-signed"
)
"""The refusal (and readiness reason) while the store is not initialized: says what to do."""


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttestationRequest:
    key: KeyRef
    domain: bytes
    data: AttestationData


@dataclass(frozen=True, slots=True)
class ProposalRequest:
    key: KeyRef
    domain: bytes
    header: BeaconBlockHeader


@dataclass(frozen=True, slots=True)
class GenericRequest:
    """Dirk's Sign: ``data`` is the 32-byte hash_tree_root of the object, signed under ``domain``."""

    key: KeyRef
    domain: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class ConsensusRequest:
    """A CometBFT vote or proposal for ``chain_id``, signed with the key configured for that chain."""

    chain_id: str
    message: CometVote | CometProposal
    skip_extension_signing: bool = False


SignRequest = AttestationRequest | ProposalRequest | GenericRequest | ConsensusRequest


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signed:
    """An item signed. ``subject``: what was signed, for the audit log (slot, epochs,
    height/round/step; never the content)."""

    signature: bytes
    key: KeyInfo | None = None
    subject: Mapping[str, int] | None = None
    extension_signature: bytes | None = None
    """CometBFT: the vote extension's signature (non-nil precommits)."""
    timestamp: tuple[int, int] | None = None
    """CometBFT: set when an earlier signature is answered, the (seconds, nanos) it signed."""
    error: ClassVar[None] = None
    ok: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Refused:
    """An item refused, and why."""

    error: errors.SignerError
    key: KeyInfo | None = None
    subject: Mapping[str, int] | None = None
    signature: ClassVar[None] = None
    extension_signature: ClassVar[None] = None
    timestamp: ClassVar[None] = None
    ok: ClassVar[bool] = False


Outcome = Signed | Refused


# --- the pipeline's working state -----------------------------------------------------------


@dataclass(slots=True, eq=False)
class Prepared:
    """One request after ``prepare``: its key, the message to sign and its protection check, or the
    error that refused it (later steps may refuse it still)."""

    key: KeyInfo | None = None
    check: ProtectionCheck | None = None
    subject: Mapping[str, int] | None = None
    """The public coordinates of the protected message (never its content), set with ``check``."""
    message: bytes = b""
    error: errors.SignerError | None = None
    signature: bytes | None = None
    """Set by signing, or by a CometBFT repeat answered with its earlier signature."""
    prior: PriorSignature | None = None
    """CometBFT: what protection says was signed before at the same height/round/step."""
    extension: bytes | None = None
    """CometBFT: the vote extension's sign bytes, signed after the vote."""
    extension_signature: bytes | None = None
    timestamp: tuple[int, int] | None = None
    """CometBFT: the earlier (seconds, nanos), when a repeat differs from the earlier message only in it."""


@dataclass(frozen=True, slots=True)
class Staged:
    """A batch past protection: every record that makes its signatures safe is committed.

    ``finish()`` signs the safe items and answers one outcome per request, in order. Splitting a
    call in two lets the batcher commit the next batch while this one is signing (invariant 1 still
    holds: nothing is signed before ``stage``/``commit`` has returned). Call ``finish()`` once.
    """

    finish: Callable[[], list[Outcome]]


class SigningService:
    def __init__(
        self,
        network: Network,
        keyring: KeyRing,
        store: ProtectionStore,
        *,
        monitor: Monitor | None = None,
        authorizer: Authorizer | None = None,
        clock: Callable[[], float] = time.perf_counter,
        key_rate: Callable[[bytes], None] | None = None,
        passphrases: PassphraseGuard | None = None,
    ) -> None:
        self.network = network
        self.keyring = keyring
        self.keys = keyring.module
        self.store = store
        self.monitor: Monitor = monitor or NullMonitor()
        self.authorizer: Authorizer = authorizer or AllowAll()
        self._authorize = None if type(self.authorizer) is AllowAll else self.authorizer.authorize
        """The signing permission check; None when every client may do everything (decided here, once)."""
        self._clock = clock
        self._key_rate = key_rate
        """Optional per-key rate limit: raises RateLimited for a key over its rate."""
        self.passphrases = passphrases or PassphraseGuard(monitor=self.monitor)
        """Failure counts and lockouts of AccountManager passphrase (module PIN) checks."""
        self._initialized = False
        """Cached once true: a store's initialization is never undone."""

    # --- the entry ------------------------------------------------------------------------

    def sign(self, client: ClientIdentity, requests: Sequence[SignRequest]) -> list[Outcome]:
        """Stage and finish: one outcome per request, in order."""
        return self.stage(client, requests).finish()

    def stage(self, client: ClientIdentity, requests: Sequence[SignRequest]) -> Staged:
        """Prepare every request and commit the batch's protection records; ``finish()`` signs."""
        return self.commit([self.prepare(client, r) for r in requests])

    def prepare(self, client: ClientIdentity, request: SignRequest) -> Prepared:
        """Step 1 for one request: validate, resolve its key, authorize, check the domain against the
        network, compute the message and its protection check. A refusal is kept in the item (with as
        much as was known: key, subject). An attestation, the common request, is prepared here; the
        other types by ``_prepare_other``."""
        item = Prepared()
        try:
            if isinstance(request, AttestationRequest):
                data, domain = request.data, request.domain
                source, target = data.source.epoch, data.target.epoch
                if len(domain) != DOMAIN_LEN:
                    raise errors.MalformedRequest(f"domain must be {DOMAIN_LEN} bytes, got {len(domain)}")
                if source > target:
                    raise errors.SourceExceedsTarget(
                        f"source epoch {source} exceeds target epoch {target}",
                        {"source_epoch": source, "target_epoch": target},
                    )
                item.key = key = self.keyring.resolve(request.key, Scheme.BLS)
                if self._authorize is not None:
                    self._authorize(client, Operation.SIGN_ATTESTATION, key)
                if self._key_rate is not None:
                    self._key_rate(key.public_key)
                domain_type = self.network.check_domain(domain, target)
                if domain_type is not DomainType.BEACON_ATTESTER:
                    raise errors.ForbiddenDomain(
                        f"attestations are signed with the beacon attester domain, not {domain_type.name.lower()}"
                    )
                item.message = compute_signing_root(data.hash_tree_root(), domain)
                history = self.keyring.history_keys.get(key.public_key, key.public_key)
                item.check = AttestationCheck(history, source, target, item.message)
                item.subject = {"source_epoch": source, "target_epoch": target}
            else:
                self._prepare_other(client, request, item)
            if item.check is not None:
                validate_check(item.check)  # e.g. a slot above 2**63-1: refused alone, not the batch
        except errors.SignerError as exc:
            item.error = exc
        except Exception as exc:  # a bug refuses its own item, never the batch, never open
            item.error = errors.InternalError(f"preparing the request failed: {type(exc).__name__}")
        return item

    def commit(self, items: Sequence[Prepared]) -> Staged:
        """Step 2: one protection transaction for the prepared items, committed on return. A batch of
        more than one first refuses its later items naming a key already named."""
        batch = list(items)
        if len(batch) > 1:
            _refuse_duplicate_keys(batch)
        pending: list[Prepared] = []
        checks: list[ProtectionCheck] = []
        for item in batch:
            if item.error is None and item.check is not None:
                pending.append(item)
                checks.append(item.check)
        staged = Staged(partial(self._finish, batch))
        if not checks:
            return staged
        started = self._clock()
        try:
            if not (self._initialized or self.protection_initialized()):
                raise errors.ProtectionNotInitialized(NOT_INITIALIZED, evidence={"kind": "protection_not_initialized"})
            verdicts = self.store.check_and_record(checks)
            if len(verdicts) != len(checks):
                raise errors.InternalError("protection store answered a different number of verdicts")
        except Exception as exc:  # not initialized, or the store failed or cannot say: refuse all (never open)
            self._refuse_all(pending, _as_store_error(exc))
            return staged
        finally:
            self.monitor.store_latency("check_and_record", self._clock() - started)
        for item, verdict in zip(pending, verdicts, strict=True):
            if verdict.refusal is not None:
                item.error = verdict.refusal
                self.monitor.refusal(verdict.refusal.offence)
            item.prior = verdict.prior
        return staged

    # --- prepare, the other request types ---------------------------------------------------

    def _prepare_other(self, client: ClientIdentity, request: SignRequest, item: Prepared) -> None:
        """``prepare`` for a request that is not an attestation: the step of its type."""
        match request:
            case ProposalRequest():
                self._prepare_proposal(client, request, item)
            case GenericRequest():
                self._prepare_generic(client, request, item)
            case ConsensusRequest():
                self._prepare_consensus(client, request, item)
            case _:
                raise errors.MalformedRequest(f"cannot sign a {type(request).__name__}")

    def _prepare_proposal(self, client: ClientIdentity, req: ProposalRequest, item: Prepared) -> None:
        _check_len("domain", req.domain, DOMAIN_LEN)
        header = req.header
        item.key = self.keyring.resolve(req.key, Scheme.BLS)
        self._admit(client, Operation.SIGN_PROPOSAL, item.key)
        domain_type = self.network.check_domain(req.domain, self.network.epoch_at_slot(header.slot))
        if domain_type != DomainType.BEACON_PROPOSER:
            raise errors.ForbiddenDomain(
                f"block proposals are signed with the beacon proposer domain, not {domain_type.name.lower()}"
            )
        item.message = compute_signing_root(header.hash_tree_root(), req.domain)
        item.check = BlockCheck(self.keyring.history_key(item.key), header.slot, item.message)
        item.subject = {"slot": header.slot}

    def _prepare_generic(self, client: ClientIdentity, req: GenericRequest, item: Prepared) -> None:
        _check_len("domain", req.domain, DOMAIN_LEN)
        _check_len("data", req.data, ROOT_LEN)
        item.key = self.keyring.resolve(req.key, Scheme.BLS)
        domain_type = self.network.check_domain(req.domain)
        if domain_type in (DomainType.BEACON_PROPOSER, DomainType.BEACON_ATTESTER):
            raise errors.ForbiddenDomain(
                f"the {domain_type.name.lower()} domain is only signed through the typed, "
                "slashing-protected calls (SignBeaconProposal / SignBeaconAttestation)"
            )
        self._admit(client, _GATED_DOMAINS.get(domain_type, Operation.SIGN_GENERIC), item.key)
        item.message = compute_signing_root(req.data, req.domain)

    def _prepare_consensus(self, client: ClientIdentity, req: ConsensusRequest, item: Prepared) -> None:
        item.key = self.keyring.chain_key(req.chain_id)
        msg = req.message
        if isinstance(msg, CometVote):
            self._admit(client, Operation.COMETBFT_VOTE, item.key)
            if msg.extends_block and not req.skip_extension_signing:
                item.extension = vote_extension_sign_bytes(req.chain_id, msg)
        else:
            self._admit(client, Operation.COMETBFT_PROPOSAL, item.key)
        check = consensus_check(req.chain_id, item.key.public_key, msg)
        item.check = check
        item.subject = {"height": check.height, "round": check.round, "step": int(check.step)}
        item.message = check.sign_bytes

    def _admit(self, client: ClientIdentity, operation: Operation, key: KeyInfo) -> None:
        """May this client do this with this key (permissions, then the per-key rate)."""
        if self._authorize is not None:
            self._authorize(client, operation, key)
        if self._key_rate is not None:
            self._key_rate(key.public_key)

    # --- commit -----------------------------------------------------------------------------

    def protection_initialized(self) -> bool:
        """True once the protection store holds its initialization record (an import, the
        declaration that the keys never signed, ``--dev`` creating keys and store together, or a
        migrated database that held history). Asks the store until it is; raises
        ProtectionStoreError when the store cannot answer."""
        if not self._initialized:
            self._initialized = self.store.initialization() is not None
        return self._initialized

    def _refuse_all(self, pending: list[Prepared], failure: errors.SignerError) -> None:
        for item in pending:
            item.error = failure
            if isinstance(failure, errors.NotSafeToSign):
                self.monitor.refusal(failure.offence)

    # --- finish -----------------------------------------------------------------------------

    def _finish(self, items: list[Prepared]) -> list[Outcome]:
        """Step 3 (``Staged.finish``): sign the safe items, answer one outcome per item, in order."""
        fresh: list[Prepared] = []
        consensus = False
        for item in items:
            if item.prior is not None:  # CometBFT: the same height/round/step was signed before
                _answer_repeat(item, item.prior)
            if item.error is None and item.signature is None and item.key is not None:
                fresh.append(item)
            consensus = consensus or isinstance(item.check, ConsensusCheck)
        self._sign_raw(fresh)
        if consensus:
            self._finish_consensus(items, fresh)
        outcomes: list[Outcome] = []
        for item in items:
            if item.error is not None:
                outcomes.append(Refused(item.error, item.key, item.subject))
            elif item.signature is None or (item.extension is not None and item.extension_signature is None):
                outcomes.append(Refused(errors.InternalError("no signature and no error"), item.key, item.subject))
            else:
                outcomes.append(
                    Signed(item.signature, item.key, item.subject, item.extension_signature, item.timestamp)
                )
        return outcomes

    def _sign_raw(self, items: list[Prepared], *, extension: bool = False) -> None:
        """Sign the items' messages (``extension``: their vote extensions) with their keys, which must
        still be live (a key retired since the item was prepared refuses it); secp256k1 keys sign the
        SHA-256 digest. Sets each item's signature, or its error: a module failure refuses them all."""
        live = self.keyring.live
        signing: list[tuple[Prepared, Scheme]] = []
        pairs: list[tuple[bytes, bytes]] = []
        for item in items:
            key = item.key
            assert key is not None
            if key.public_key not in live:
                item.error = errors.UnknownKey(f"key {key.name!r} was removed while the request was in flight")
                continue
            message = (item.extension or b"") if extension else item.message
            pairs.append((key.public_key, secp256k1.sha256(message) if key.scheme is Scheme.SECP256K1 else message))
            signing.append((item, key.scheme))
        if not signing:
            return
        started = self._clock()
        try:
            signatures = self.keys.sign_many(pairs)
        except Exception as exc:  # nothing fails open
            self.monitor.module_error(self.keys.kind)
            failure = (
                exc
                if isinstance(exc, errors.SignerError)
                else errors.KeyModuleError(f"key module failed: {type(exc).__name__}")
            )
            for item, _ in signing:
                item.error = failure
            return
        elapsed = self._clock() - started
        by_scheme: dict[Scheme, int] = {}
        for (item, scheme), signature in zip(signing, signatures, strict=True):
            if extension:
                item.extension_signature = signature
            else:
                item.signature = signature
            by_scheme[scheme] = by_scheme.get(scheme, 0) + 1
        for scheme, count in by_scheme.items():
            self.monitor.signed(scheme, count, elapsed)
        self.monitor.batch(len(signing))

    def _finish_consensus(self, items: list[Prepared], fresh: list[Prepared]) -> None:
        """CometBFT: cache the new signatures beside their committed records (one transaction), for
        repeats; then sign the vote extensions."""
        records = [
            ConsensusSignature(
                check.chain_id,
                check.public_key,
                check.height,
                check.round,
                int(check.step),
                item.message,
                item.signature,
            )
            for item in fresh
            if isinstance(check := item.check, ConsensusCheck) and item.signature is not None
        ]
        if records:
            # If this fails, the decision is still committed; only the cached signatures are missing.
            # A repeat re-signs the same bytes, deterministically (RFC 6979 / Ed25519): same signature.
            with contextlib.suppress(errors.ProtectionStoreError):
                self.store.record_consensus_signatures(records)
        self._sign_raw(
            [i for i in items if i.error is None and i.signature is not None and i.extension is not None],
            extension=True,
        )

    # --- accounts (Dirk's AccountManager) and CometBFT GetPubKey -------------------------------

    def lock_account(self, client: ClientIdentity, ref: KeyRef) -> KeyInfo:
        key = self.keyring.lookup(ref)
        self.authorizer.authorize(client, Operation.ACCOUNT_MANAGEMENT, key)
        self.keyring.lock(key)
        return key

    def unlock_account(self, client: ClientIdentity, ref: KeyRef, passphrase: str) -> KeyInfo:
        key = self.keyring.lookup(ref)
        self.authorizer.authorize(client, Operation.ACCOUNT_MANAGEMENT, key)
        self._check_passphrase(client, passphrase, f"wrong passphrase for {ref.describe()}")
        self.keyring.unlock(key)
        return key

    def generate_account(self, client: ClientIdentity, name: str, passphrase: str) -> KeyInfo:
        """AccountManager/Generate: a new BLS key named ``name``, made inside the module."""
        self.admit_generate(client, name, passphrase)
        key = self.keys.generate(name, Scheme.BLS)
        self.keyring.reload_keys()
        return key

    def admit_generate(self, client: ClientIdentity, name: str, passphrase: str) -> None:
        """May this client generate an account named ``name`` here (also a distributed one): the
        permission, the module PIN as passphrase, a valid name not in use."""
        self.authorizer.authorize(client, Operation.ACCOUNT_MANAGEMENT, None)
        self._check_passphrase(client, passphrase, "wrong passphrase: generating a key needs the module PIN")
        check_account_name(name)
        if self.keyring.has_account(name):
            raise errors.MalformedRequest(f"account {name!r} already exists")

    def _check_passphrase(self, client: ClientIdentity, passphrase: str, wrong: str) -> None:
        """The module PIN, checked under the PassphraseGuard: refused at once while the client (or
        everyone) is locked out, one check at a time, and every wrong one counted."""
        self.passphrases.check(client.name)
        with self.passphrases.gate():
            right = self.keys.verify_pin(passphrase)
        if not right:
            self.passphrases.failed(client.name)
            raise errors.AccessDenied(wrong)
        self.passphrases.succeeded(client.name)

    def comet_public_key(self, client: ClientIdentity, chain_id: str) -> KeyInfo:
        """GetPubKey: only for a client that may sign votes or proposals with the chain's key."""
        key = self.keyring.chain_key(chain_id)
        if not self.authorizer.permits(client, Operation.COMETBFT_PROPOSAL, key):
            self.authorizer.authorize(client, Operation.COMETBFT_VOTE, key)  # AccessDenied says why
        return key


def _refuse_duplicate_keys(items: list[Prepared]) -> None:
    """A batch names each key once: the later items naming a key are refused."""
    seen: set[bytes] = set()
    for item in items:
        if item.error is not None or item.key is None:
            continue
        if item.key.public_key in seen:
            item.error = errors.MalformedRequest(
                f"the batch names key {item.key.name!r} more than once; send one message per key per batch"
            )
            item.check = item.subject = None
            continue
        seen.add(item.key.public_key)


def _answer_repeat(item: Prepared, prior: PriorSignature) -> None:
    """CometBFT: the same height/round/step signed before is answered with that signature (and,
    when only the timestamp differs, the earlier timestamp)."""
    if prior.sign_bytes != item.message:
        earlier = timestamp_from_sign_bytes(prior.sign_bytes)
        item.timestamp = (earlier.seconds, earlier.nanos)
    item.message = prior.sign_bytes
    if prior.signature is not None:
        item.signature = prior.signature


def _as_store_error(exc: Exception) -> errors.SignerError:
    """What a failed protection step refuses with: the refusal itself (not initialized, the store
    failed, a wrong answer), else a ProtectionStoreError that names what happened (never open)."""
    if isinstance(exc, errors.ProtectionStoreError | errors.ProtectionNotInitialized | errors.InternalError):
        return exc
    detail = exc.message if isinstance(exc, errors.SignerError) else type(exc).__name__
    return errors.ProtectionStoreError(f"slashing protection failed: {detail}")


def _check_len(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise errors.MalformedRequest(f"{name} must be {length} bytes, got {len(value)}")
