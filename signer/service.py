"""SigningService: THE only path to a signature. The invariants (docs/ARCHITECTURE.md) live here and only here.

Every call is batch-shaped and answers one ``Outcome`` per item, in order:

1. validate        - malformed items are refused (MalformedRequest), the rest go on
2. resolve keys    - unknown (UnknownKey), locked (KeyLocked), wrong scheme (UnsupportedScheme)
3. authorize       - the injected Authorizer (AccessDenied)
4. signing roots   - computed here from typed data, after the domain is checked against the network
5. protection      - ONE ``check_and_record`` transaction for the whole batch, committed before any
                     signature exists (invariant 1); a store failure refuses every item (invariant 2);
                     a store that is not initialized (new or emptied: a lost history) refuses every
                     item (ProtectionNotInitialized) until history is imported or declared
6. sign            - the key module (or the parallel signer in front of it) signs the safe items

A batch may not name the same key twice: the later items naming a key are refused.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from signer import errors
from signer.cometbft.canonical import timestamp_from_sign_bytes, vote_extension_sign_bytes
from signer.cometbft.consensus import consensus_check
from signer.cometbft.messages import Proposal as CometProposal
from signer.cometbft.messages import Timestamp
from signer.cometbft.messages import Vote as CometVote
from signer.crypto import secp256k1
from signer.eth2.containers import AttestationData, BeaconBlockHeader
from signer.eth2.networks import Network
from signer.eth2.signing import DomainType, compute_signing_root
from signer.keys.module import KeyModule
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
    Monitor,
    NullMonitor,
    Operation,
    ProtectionCheck,
    Scheme,
    Verdict,
)

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
_O = TypeVar("_O")


# --- requests and outcomes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A key named by account (``wallet/account``) or by public key; exactly one is set."""

    account: str | None = None
    public_key: bytes | None = None

    def describe(self) -> str:
        if self.account is not None:
            return f"account {self.account!r}"
        if self.public_key is not None:
            return f"public key 0x{self.public_key.hex()}"
        return "no key"


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


@dataclass(frozen=True, slots=True)
class Outcome:
    """One item's result: a signature, or the error that refused it."""

    signature: bytes | None = None
    error: errors.SignerError | None = None
    key: KeyInfo | None = None
    subject: Mapping[str, int] | None = None
    """What was (or would have been) signed, for the audit log: slot, epochs, height/round/step."""

    @property
    def ok(self) -> bool:
        return self.signature is not None


def subject_of(check: ProtectionCheck | None) -> Mapping[str, int] | None:
    """The public coordinates of a protected message (never its content)."""
    if isinstance(check, BlockCheck):
        return {"slot": check.slot}
    if isinstance(check, AttestationCheck):
        return {"source_epoch": check.source_epoch, "target_epoch": check.target_epoch}
    if isinstance(check, ConsensusCheck):
        return {"height": check.height, "round": check.round, "step": int(check.step)}
    return None


@dataclass(frozen=True, slots=True)
class ConsensusOutcome:
    signature: bytes | None = None
    error: errors.SignerError | None = None
    extension_signature: bytes | None = None
    timestamp: tuple[int, int] | None = None
    """Set when an earlier signature is returned: the timestamp (seconds, nanos) that was signed."""
    key: KeyInfo | None = None
    subject: Mapping[str, int] | None = None

    @property
    def ok(self) -> bool:
        return self.signature is not None


@dataclass(frozen=True, slots=True)
class Staged(Generic[_O]):
    """A batch past protection: every record that makes its signatures safe is committed.

    ``finish()`` signs the safe items and answers one outcome per request, in order. Splitting a
    call in two lets the batcher commit the next batch while this one is signing (invariant 1 still
    holds: nothing is signed before ``stage_*`` has returned). Call ``finish()`` exactly once.
    """

    finish: Callable[[], list[_O]]


@dataclass(slots=True)
class _Item:
    """Internal working state of one batch item."""

    key: KeyInfo | None = None
    check: ProtectionCheck | None = None
    message: bytes = b""
    error: errors.SignerError | None = None
    signature: bytes | None = None
    extra: dict[str, object] = field(default_factory=dict)


class SigningService:
    def __init__(
        self,
        network: Network,
        keys: KeyModule,
        store: ProtectionStore,
        *,
        monitor: Monitor | None = None,
        authorizer: Authorizer | None = None,
        comet_chains: dict[str, str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        key_rate: Callable[[bytes], None] | None = None,
        passphrases: PassphraseGuard | None = None,
    ) -> None:
        self.network = network
        self.keys = keys
        self.store = store
        self.monitor: Monitor = monitor or NullMonitor()
        self.authorizer: Authorizer = authorizer or AllowAll()
        self.comet_chains = dict(comet_chains or {})
        """chain_id -> account name of the key that signs for it."""
        self._clock = clock
        self._key_rate = key_rate
        """Optional per-key rate limit: raises RateLimited for a key over its rate."""
        self.passphrases = passphrases or PassphraseGuard(monitor=self.monitor)
        """Failure counts and lockouts of AccountManager passphrase (module PIN) checks."""
        self._index_lock = threading.Lock()
        self._by_name: dict[str, KeyInfo] = {}
        self._by_public_key: dict[bytes, KeyInfo] = {}
        self._locked: set[bytes] = set()
        self._retired: set[bytes] = set()
        """Keys being removed (admin DeleteKeys): out of the index even if the module still lists them."""
        self._initialized = False
        """Cached once true: a store's initialization is never undone."""
        self.reload_keys()

    # --- protection initialized? ----------------------------------------------------------

    def protection_initialized(self) -> bool:
        """True once the protection store holds its initialization record (an import, the
        declaration that the keys never signed, ``--dev`` creating keys and store together, or a
        migrated database that held history). Asks the store until it is; raises
        ProtectionStoreError when the store cannot answer."""
        if not self._initialized:
            self._initialized = self.store.initialization() is not None
        return self._initialized

    def _require_initialized(self) -> None:
        if not self.protection_initialized():
            raise errors.ProtectionNotInitialized(NOT_INITIALIZED, evidence={"kind": "protection_not_initialized"})

    # --- key index ------------------------------------------------------------------------

    def reload_keys(self) -> list[KeyInfo]:
        """Re-read the module's key list (after import, generate, delete)."""
        infos = self.keys.list_keys() if self.keys.unlocked else []
        with self._index_lock:
            infos = [k for k in infos if k.public_key not in self._retired]
            self._by_name = {k.name: k for k in infos}
            self._by_public_key = {k.public_key: k for k in infos}
        return infos

    def retire_keys(self, public_keys: Sequence[bytes]) -> None:
        """Stop signing with these keys now (before they are deleted from the module).

        From here on no new item resolves to them, and an item already past protection is refused
        before its signature is made (``_sign`` checks the index again). So once this returns, every
        signature these keys made or will make has its record committed already: an export taken now
        is complete. ``reload_keys`` keeps them out until ``readmit_keys``.
        """
        with self._index_lock:
            self._retired.update(bytes(pk) for pk in public_keys)
        self.reload_keys()

    def readmit_keys(self, public_keys: Sequence[bytes]) -> list[KeyInfo]:
        """Undo ``retire_keys`` (deleted keys stay gone: the module no longer lists them)."""
        with self._index_lock:
            self._retired.difference_update(bytes(pk) for pk in public_keys)
        return self.reload_keys()

    def list_keys(self) -> list[KeyInfo]:
        with self._index_lock:
            return sorted(self._by_name.values(), key=lambda k: k.name)

    def is_locked(self, key: KeyInfo) -> bool:
        return key.public_key in self._locked

    def lock_account(self, client: ClientIdentity, ref: KeyRef) -> KeyInfo:
        key = self._lookup(ref)
        self.authorizer.authorize(client, Operation.ACCOUNT_MANAGEMENT, key)
        self._locked.add(key.public_key)
        return key

    def unlock_account(self, client: ClientIdentity, ref: KeyRef, passphrase: str) -> KeyInfo:
        key = self._lookup(ref)
        self.authorizer.authorize(client, Operation.ACCOUNT_MANAGEMENT, key)
        self._check_passphrase(client, passphrase, f"wrong passphrase for {ref.describe()}")
        self._locked.discard(key.public_key)
        return key

    def generate_account(self, client: ClientIdentity, name: str, passphrase: str) -> KeyInfo:
        """AccountManager/Generate: a new BLS key named ``name``, made inside the module."""
        self.authorizer.authorize(client, Operation.ACCOUNT_MANAGEMENT, None)
        self._check_passphrase(client, passphrase, "wrong passphrase: generating a key needs the module PIN")
        key = self.keys.generate(name, Scheme.BLS)
        self.reload_keys()
        return key

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

    def _admit(self, client: ClientIdentity, operation: Operation, key: KeyInfo) -> None:
        """Step 2: may this client do this with this key (permissions, then the per-key rate)."""
        self.authorizer.authorize(client, operation, key)
        if self._key_rate is not None:
            self._key_rate(key.public_key)

    def _lookup(self, ref: KeyRef) -> KeyInfo:
        if (ref.account is None) == (ref.public_key is None):
            raise errors.MalformedRequest("name the key by exactly one of account or public key")
        with self._index_lock:
            if ref.account is not None:
                key = self._by_name.get(ref.account)
            else:
                assert ref.public_key is not None
                key = self._by_public_key.get(ref.public_key)
        if key is None:
            raise errors.UnknownKey(f"no key loaded for {ref.describe()}")
        return key

    def key_of(self, ref: KeyRef) -> KeyInfo | None:
        """The key ``ref`` names, or None if it names none (the batcher keeps one item per key per batch)."""
        try:
            return self._lookup(ref)
        except errors.SignerError:
            return None

    def _resolve(self, ref: KeyRef, scheme: Scheme) -> KeyInfo:
        key = self._lookup(ref)
        if key.scheme != scheme:
            raise errors.UnsupportedScheme(f"{ref.describe()} is a {key.scheme} key, this call needs {scheme}")
        if key.public_key in self._locked:
            raise errors.KeyLocked(f"{ref.describe()} is locked")
        return key

    # --- Ethereum -------------------------------------------------------------------------

    def sign_attestations(
        self,
        client: ClientIdentity,
        requests: Sequence[AttestationRequest],
        method: str = "SignBeaconAttestation",
    ) -> list[Outcome]:
        return self.stage_attestations(client, requests, method).finish()

    def stage_attestations(
        self,
        client: ClientIdentity,
        requests: Sequence[AttestationRequest],
        method: str = "SignBeaconAttestation",
    ) -> Staged[Outcome]:
        """Steps 1-5 of ``sign_attestations`` (committed on return); ``finish()`` signs."""
        items = [_Item() for _ in requests]
        for item, req in zip(items, requests, strict=True):
            try:
                _check_len("domain", req.domain, DOMAIN_LEN)
                data = req.data
                if data.source.epoch > data.target.epoch:
                    raise errors.SourceExceedsTarget(
                        f"source epoch {data.source.epoch} exceeds target epoch {data.target.epoch}",
                        {"source_epoch": data.source.epoch, "target_epoch": data.target.epoch},
                    )
                item.key = self._resolve(req.key, Scheme.BLS)
                self._admit(client, Operation.SIGN_ATTESTATION, item.key)
                domain_type = self.network.check_domain(req.domain, data.target.epoch)
                if domain_type != DomainType.BEACON_ATTESTER:
                    raise errors.ForbiddenDomain(
                        f"attestations are signed with the beacon attester domain, not {domain_type.name.lower()}"
                    )
                root = compute_signing_root(data.hash_tree_root(), req.domain)
                item.message = root
                item.check = AttestationCheck(item.key.public_key, data.source.epoch, data.target.epoch, root)
            except errors.SignerError as exc:
                item.error = exc
        return self._stage_eth2(items)

    def sign_proposals(
        self, client: ClientIdentity, requests: Sequence[ProposalRequest], method: str = "SignBeaconProposal"
    ) -> list[Outcome]:
        return self.stage_proposals(client, requests, method).finish()

    def stage_proposals(
        self, client: ClientIdentity, requests: Sequence[ProposalRequest], method: str = "SignBeaconProposal"
    ) -> Staged[Outcome]:
        """Steps 1-5 of ``sign_proposals`` (committed on return); ``finish()`` signs."""
        items = [_Item() for _ in requests]
        for item, req in zip(items, requests, strict=True):
            try:
                _check_len("domain", req.domain, DOMAIN_LEN)
                header = req.header
                item.key = self._resolve(req.key, Scheme.BLS)
                self._admit(client, Operation.SIGN_PROPOSAL, item.key)
                domain_type = self.network.check_domain(req.domain, self.network.epoch_at_slot(header.slot))
                if domain_type != DomainType.BEACON_PROPOSER:
                    raise errors.ForbiddenDomain(
                        f"block proposals are signed with the beacon proposer domain, not {domain_type.name.lower()}"
                    )
                root = compute_signing_root(header.hash_tree_root(), req.domain)
                item.message = root
                item.check = BlockCheck(item.key.public_key, header.slot, root)
            except errors.SignerError as exc:
                item.error = exc
        return self._stage_eth2(items)

    def sign_generic(
        self, client: ClientIdentity, requests: Sequence[GenericRequest], method: str = "Sign"
    ) -> list[Outcome]:
        items = [_Item() for _ in requests]
        for item, req in zip(items, requests, strict=True):
            try:
                _check_len("domain", req.domain, DOMAIN_LEN)
                _check_len("data", req.data, ROOT_LEN)
                item.key = self._resolve(req.key, Scheme.BLS)
                domain_type = self.network.check_domain(req.domain)
                if domain_type in (DomainType.BEACON_PROPOSER, DomainType.BEACON_ATTESTER):
                    raise errors.ForbiddenDomain(
                        f"the {domain_type.name.lower()} domain is only signed through the typed, "
                        "slashing-protected calls (SignBeaconProposal / SignBeaconAttestation)"
                    )
                operation = _GATED_DOMAINS.get(domain_type, Operation.SIGN_GENERIC)
                self._admit(client, operation, item.key)
                item.message = compute_signing_root(req.data, req.domain)
            except errors.SignerError as exc:
                item.error = exc
        return self._stage_eth2(items).finish()

    def _stage_eth2(self, items: list[_Item]) -> Staged[Outcome]:
        self._refuse_duplicate_keys(items)
        self._protect(items)

        def finish() -> list[Outcome]:
            self._sign(items)
            return [
                Outcome(signature=i.signature, error=i.error, key=i.key, subject=subject_of(i.check)) for i in items
            ]

        return Staged(finish)

    # --- CometBFT -------------------------------------------------------------------------

    def comet_public_key(self, client: ClientIdentity, chain_id: str) -> KeyInfo:
        """GetPubKey: only for a client that may sign votes or proposals with the chain's key."""
        key = self._chain_key(chain_id)
        if not self.authorizer.permits(client, Operation.COMETBFT_PROPOSAL, key):
            self.authorizer.authorize(client, Operation.COMETBFT_VOTE, key)  # AccessDenied says why
        return key

    def comet_key_of(self, chain_id: str) -> KeyInfo | None:
        """The key that signs for ``chain_id``, or None (the batcher keeps one item per key per batch)."""
        try:
            return self._chain_key(chain_id)
        except errors.SignerError:
            return None

    def _chain_key(self, chain_id: str) -> KeyInfo:
        account = self.comet_chains.get(chain_id)
        if account is None:
            raise errors.UnknownKey(f"no key is configured for chain_id {chain_id!r}")
        key = self._lookup(KeyRef(account=account))
        if key.scheme not in (Scheme.SECP256K1, Scheme.ED25519):
            raise errors.UnsupportedScheme(f"chain {chain_id!r} is configured with a {key.scheme} key")
        if key.public_key in self._locked:
            raise errors.KeyLocked(f"the key of chain {chain_id!r} is locked")
        return key

    def sign_consensus(
        self, client: ClientIdentity, requests: Sequence[ConsensusRequest], method: str = "SignVote"
    ) -> list[ConsensusOutcome]:
        """Sign CometBFT votes/proposals under height/round/step protection.

        A repeat at the same height/round/step with identical sign bytes, or bytes that differ only
        in timestamp, answers the earlier signature (and, for the latter, the earlier timestamp).
        Vote extensions are signed only for non-nil precommits.
        """
        return self.stage_consensus(client, requests, method).finish()

    def stage_consensus(
        self, client: ClientIdentity, requests: Sequence[ConsensusRequest], method: str = "SignVote"
    ) -> Staged[ConsensusOutcome]:
        """Steps 1-5 of ``sign_consensus`` (committed on return); ``finish()`` signs."""
        items = [_Item() for _ in requests]
        for item, req in zip(items, requests, strict=True):
            try:
                item.key = self._chain_key(req.chain_id)
                msg = req.message
                if isinstance(msg, CometVote):
                    self._admit(client, Operation.COMETBFT_VOTE, item.key)
                    if msg.extends_block and not req.skip_extension_signing:
                        item.extra["extension_bytes"] = vote_extension_sign_bytes(req.chain_id, msg)
                else:
                    self._admit(client, Operation.COMETBFT_PROPOSAL, item.key)
                check = consensus_check(req.chain_id, item.key.public_key, msg)
                item.check = check
                item.message = check.sign_bytes
            except errors.SignerError as exc:
                item.error = exc
        self._refuse_duplicate_keys(items)
        verdicts = self._protect(items)
        for item, verdict in zip(items, verdicts, strict=True):
            if item.error is not None or verdict is None or verdict.prior is None:
                continue
            # The same height/round/step was signed before: answer that signature.
            if verdict.prior.sign_bytes != item.message:
                item.extra["timestamp"] = timestamp_from_sign_bytes(verdict.prior.sign_bytes)
            item.message = verdict.prior.sign_bytes
            if verdict.prior.signature is not None:
                item.signature = verdict.prior.signature
        return Staged(lambda: self._finish_consensus(items))

    def _finish_consensus(self, items: list[_Item]) -> list[ConsensusOutcome]:
        fresh = [i for i in items if i.error is None and i.signature is None]
        self._sign(fresh)
        self._remember_signatures([i for i in fresh if i.signature is not None])
        ext_items = [i for i in items if i.signature is not None and "extension_bytes" in i.extra]
        ext_sigs = self._sign_raw(
            ext_items, [self._digest(i, _as_bytes(i.extra["extension_bytes"])) for i in ext_items]
        )
        outcomes: list[ConsensusOutcome] = []
        for item in items:
            ts = item.extra.get("timestamp")
            extension_signature = ext_sigs.get(id(item))
            if item.signature is not None and "extension_bytes" in item.extra and extension_signature is None:
                # Signing the extension failed: the vote is refused as a whole (its error is set).
                outcomes.append(ConsensusOutcome(error=item.error, key=item.key, subject=subject_of(item.check)))
                continue
            outcomes.append(
                ConsensusOutcome(
                    signature=item.signature if item.error is None else None,
                    error=item.error,
                    extension_signature=extension_signature,
                    timestamp=(ts.seconds, ts.nanos) if isinstance(ts, Timestamp) else None,
                    key=item.key,
                    subject=subject_of(item.check),
                )
            )
        return outcomes

    def _remember_signatures(self, items: list[_Item]) -> None:
        """Cache CometBFT signatures beside their committed records (one transaction), for repeats."""
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
            for item in items
            if isinstance(check := item.check, ConsensusCheck) and item.signature is not None
        ]
        if not records:
            return
        # If this fails, the decision is still committed; only the cached signatures are missing.
        # A repeat re-signs the same bytes, deterministically (RFC 6979 / Ed25519): same signature.
        with contextlib.suppress(errors.ProtectionStoreError):
            self.store.record_consensus_signatures(records)

    # --- the shared steps -----------------------------------------------------------------

    @staticmethod
    def _refuse_duplicate_keys(items: list[_Item]) -> None:
        seen: set[bytes] = set()
        for item in items:
            if item.error is not None or item.key is None:
                continue
            if item.key.public_key in seen:
                item.error = errors.MalformedRequest(
                    f"the batch names key {item.key.name!r} more than once; send one message per key per batch"
                )
                item.check = None
                continue
            seen.add(item.key.public_key)

    def _protect(self, items: list[_Item]) -> list[Verdict | None]:  # noqa: C901 -- the protection batch: coalescing, the store call and its failures (issue 14 item 1 reshapes it)
        """One protection transaction for every item that has a check. Refuses all on failure."""
        verdicts: list[Verdict | None] = [None] * len(items)
        for item in items:
            if item.error is None and item.check is not None:
                try:  # e.g. a uint64 slot/epoch above 2**63-1: refused alone, not the whole batch
                    validate_check(item.check)
                except errors.MalformedRequest as exc:
                    item.error = exc
        pending = [(n, i) for n, i in enumerate(items) if i.error is None and i.check is not None]
        if not pending:
            return verdicts
        started = self._clock()
        try:
            self._require_initialized()
        except Exception as exc:  # not initialized, or the store cannot say: refuse all (never open)
            refusal = (
                exc
                if isinstance(exc, errors.SignerError)
                else errors.ProtectionStoreError(f"slashing protection failed: {type(exc).__name__}")
            )
            for _, item in pending:
                item.error = refusal
                if isinstance(refusal, errors.NotSafeToSign):
                    self.monitor.refusal(refusal.offence)
            return verdicts
        try:
            results = self.store.check_and_record([i.check for _, i in pending if i.check is not None])
        except errors.SignerError as exc:
            failure = (
                exc
                if isinstance(exc, errors.ProtectionStoreError)
                else errors.ProtectionStoreError(f"slashing protection failed: {exc.message}")
            )
            for _, item in pending:
                item.error = failure
            return verdicts
        except Exception as exc:  # nothing fails open
            failure = errors.ProtectionStoreError(f"slashing protection failed: {type(exc).__name__}")
            for _, item in pending:
                item.error = failure
            return verdicts
        finally:
            self.monitor.store_latency("check_and_record", self._clock() - started)
        if len(results) != len(pending):
            for _, item in pending:
                item.error = errors.InternalError("protection store answered a different number of verdicts")
            return verdicts
        for (n, item), verdict in zip(pending, results, strict=True):
            verdicts[n] = verdict
            if verdict.refusal is not None:
                item.error = verdict.refusal
                self.monitor.refusal(verdict.refusal.offence)
            elif verdict.safe is None:
                item.error = errors.InternalError("protection store gave neither a verdict nor a refusal")
        return verdicts

    def _sign(self, items: list[_Item]) -> None:
        todo = [i for i in items if i.error is None and i.key is not None and i.signature is None]
        live = self._by_public_key  # swapped whole by reload_keys; read once
        for item in todo:
            assert item.key is not None
            if item.key.public_key not in live:
                item.error = errors.UnknownKey(f"key {item.key.name!r} was removed while the request was in flight")
        todo = [i for i in todo if i.error is None]
        messages = [self._digest(i, i.message) for i in todo]
        sigs = self._sign_raw(todo, messages)
        for item in todo:
            sig = sigs.get(id(item))
            if sig is not None:
                item.signature = sig

    @staticmethod
    def _digest(item: _Item, message: bytes) -> bytes:
        """What the key module signs for ``message``: secp256k1 keys sign its SHA-256 digest."""
        assert item.key is not None
        if item.key.scheme == Scheme.SECP256K1:
            return secp256k1.sha256(message)
        return message

    def _sign_raw(self, items: list[_Item], messages: list[bytes]) -> dict[int, bytes]:
        """Sign ``messages`` with the items' keys; on failure, set the items' errors."""
        if not items:
            return {}
        started = self._clock()
        pairs = [(i.key.public_key, m) for i, m in zip(items, messages, strict=True) if i.key is not None]
        try:
            sigs = self.keys.sign_many(pairs)
        except errors.SignerError as exc:
            self.monitor.module_error(self.keys.kind)
            for item in items:
                item.error = exc
            return {}
        except Exception as exc:  # nothing fails open
            self.monitor.module_error(self.keys.kind)
            failure = errors.KeyModuleError(f"key module failed: {type(exc).__name__}")
            for item in items:
                item.error = failure
            return {}
        elapsed = self._clock() - started
        by_scheme: dict[Scheme, int] = {}
        for item in items:
            assert item.key is not None
            by_scheme[item.key.scheme] = by_scheme.get(item.key.scheme, 0) + 1
        for scheme, count in by_scheme.items():
            self.monitor.signed(scheme, count, elapsed)
        self.monitor.batch(len(items))
        return {id(item): sig for item, sig in zip(items, sigs, strict=True)}


def _as_bytes(value: object) -> bytes:
    assert isinstance(value, bytes)
    return value


def _check_len(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise errors.MalformedRequest(f"{name} must be {length} bytes, got {len(value)}")
