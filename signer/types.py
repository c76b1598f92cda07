"""Domain types shared by every layer: keys, protection checks and verdicts, the Monitor protocol.

Frozen, slotted dataclasses; no I/O and no foreign library here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Protocol

from signer.errors import MalformedRequest, NotSafeToSign

ZERO_ROOT = b"\x00" * 32


MAX_CHAIN_ID_LEN = 50
"""types.MaxChainIDLen (cometbft types/genesis.go): GenesisDoc.ValidateBasic refuses a longer one."""


def check_chain_id(chain_id: str) -> None:
    """CometBFT's chain_id rule, applied wherever a chain_id enters (config, admin API, CLI, privval
    requests): non-empty and at most 50 bytes (GenesisDoc.ValidateBasic), and printable (it is shown
    in logs and messages). Raises MalformedRequest saying which rule."""
    if not isinstance(chain_id, str):
        raise MalformedRequest(f"chain_id must be a string, got {type(chain_id).__name__}")
    if not chain_id:
        raise MalformedRequest("chain_id is empty: refusing to sign a message bound to no chain")
    if len(chain_id.encode("utf-8", "replace")) > MAX_CHAIN_ID_LEN:
        raise MalformedRequest(f"chain_id is longer than {MAX_CHAIN_ID_LEN} bytes")
    if not chain_id.isprintable():
        raise MalformedRequest("chain_id contains non-printable characters")


class Scheme(enum.StrEnum):
    BLS = "bls"
    SECP256K1 = "secp256k1"
    ED25519 = "ed25519"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a key module tells about a key. Never holds secret material."""

    handle: str
    name: str
    """Account name, ``wallet/account`` as in Dirk."""
    scheme: Scheme
    public_key: bytes

    @property
    def public_key_hex(self) -> str:
        return "0x" + self.public_key.hex()


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


# --- slashing-protection checks (what the store is asked) -----------------------------------


@dataclass(frozen=True, slots=True)
class BlockCheck:
    """A beacon block proposal about to be signed."""

    public_key: bytes
    slot: int
    signing_root: bytes | None
    """None (or all zeros, for imported records) means unknown: never equal to anything."""


@dataclass(frozen=True, slots=True)
class AttestationCheck:
    """A beacon attestation about to be signed."""

    public_key: bytes
    source_epoch: int
    target_epoch: int
    signing_root: bytes | None


class ConsensusStep(enum.IntEnum):
    """CometBFT sign steps, ordered as FilePV orders them."""

    PROPOSAL = 1
    PREVOTE = 2
    PRECOMMIT = 3


@dataclass(frozen=True, slots=True)
class ConsensusCheck:
    """A CometBFT vote or proposal about to be signed (height/round/step protection)."""

    chain_id: str
    public_key: bytes
    height: int
    round: int
    step: ConsensusStep
    sign_bytes: bytes
    """The exact canonical, length-delimited bytes that will be signed."""
    sign_bytes_without_timestamp: bytes
    """The same message with its timestamp cleared: equal for timestamp-only differences."""


ProtectionCheck = BlockCheck | AttestationCheck | ConsensusCheck


class Safe(enum.Enum):
    VALID = "valid"
    """New data that conflicts with nothing; it has been recorded."""
    SAME_DATA = "same_data"
    """Identical to what was signed before (same signing root / sign bytes): re-signing is safe."""


@dataclass(frozen=True, slots=True)
class PriorSignature:
    """CometBFT: what was signed before at the same height/round/step."""

    sign_bytes: bytes
    signature: bytes | None
    """None if the signer stopped between commit and signature record: re-sign ``sign_bytes``."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A protection verdict: safe to sign, and recorded."""

    safe: Safe
    prior: PriorSignature | None = None
    """Set for a CometBFT repeat (identical or timestamp-only difference): sign/return this instead."""
    refusal: ClassVar[None] = None
    ok: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Rejected:
    """A protection verdict: not safe to sign, and why; nothing was recorded for it."""

    refusal: NotSafeToSign
    safe: ClassVar[None] = None
    prior: ClassVar[None] = None
    ok: ClassVar[bool] = False


Verdict = Accepted | Rejected
"""One per item of a protection batch, in order: accepted or rejected, nothing in between."""


class RequestOutcome(enum.StrEnum):
    """How a request ended: the ``outcome`` label of signer_requests_total and of audit events (a
    closed set; ``signer.api.status`` picks it for an error)."""

    SUCCEEDED = "succeeded"
    DENIED = "denied"
    """Refused by slashing protection, by authorization, or as not signable (unknown key, domain)."""
    FAILED = "failed"
    RATE_LIMITED = "rate_limited"
    INVALID = "invalid"
    UNAVAILABLE = "unavailable"


# --- the Monitor: how the core reports without importing the metrics library ----------------


class Monitor(Protocol):
    """Everything the core reports. ``observability`` implements it; tests may use NullMonitor."""

    def request_done(self, method: str, outcome: str, duration_s: float) -> None: ...

    def signed(self, scheme: Scheme, count: int, duration_s: float) -> None: ...

    def batch(self, size: int) -> None: ...

    def refusal(self, offence: str) -> None: ...

    def store_latency(self, operation: str, duration_s: float) -> None: ...

    def rate_limited(self, client: str) -> None: ...

    def module_error(self, module: str) -> None: ...

    def keys_loaded(self, module: str, scheme: Scheme, count: int) -> None: ...

    def ready(self, is_ready: bool) -> None: ...

    def access_denied(self, client: str, operation: str) -> None: ...

    def security_event(self, event: str) -> None:
        """A security event (``signer.passphrase.SECURITY_EVENTS``: a wrong passphrase, a lockout)."""
        ...


class NullMonitor:
    """A Monitor that records nothing."""

    def request_done(self, method: str, outcome: str, duration_s: float) -> None:
        pass

    def signed(self, scheme: Scheme, count: int, duration_s: float) -> None:
        pass

    def batch(self, size: int) -> None:
        pass

    def refusal(self, offence: str) -> None:
        pass

    def store_latency(self, operation: str, duration_s: float) -> None:
        pass

    def rate_limited(self, client: str) -> None:
        pass

    def module_error(self, module: str) -> None:
        pass

    def keys_loaded(self, module: str, scheme: Scheme, count: int) -> None:
        pass

    def ready(self, is_ready: bool) -> None:
        pass

    def access_denied(self, client: str, operation: str) -> None:
        pass

    def security_event(self, event: str) -> None:
        pass


# --- the audit trail: one event per signing decision (observability/audit.py writes them) -----


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One signing decision (or refusal) for the audit log. Public data only, never a secret.

    ``method`` is the short gRPC method name (or the service call); ``outcome`` a metrics outcome
    ("succeeded", "denied", "rate_limited", "invalid", "unavailable", "failed"); ``offence`` the
    NotSafeToSign offence when slashing protection refused; ``reason`` the refusal message.
    """

    client: str
    method: str
    outcome: str
    public_key: bytes | None = None
    account: str | None = None
    operation: str | None = None
    slot: int | None = None
    epoch: int | None = None
    source_epoch: int | None = None
    target_epoch: int | None = None
    height: int | None = None
    round: int | None = None
    step: int | None = None
    offence: str | None = None
    reason: str | None = None
    duration_ms: float | None = None
    request_id: str | None = None
    operator: str | None = None
    """Admin calls: the operator whose one-time code the call carried (or claimed)."""
    approval: str | None = None
    """Admin calls: the id of the pending operation asked for or approved."""
    ts: float | None = None
    """Seconds since the Unix epoch; None means "when recorded"."""


class AuditSink(Protocol):
    """Where audit events go (``observability.audit.AuditLog``; ``NullAudit`` drops them)."""

    def record(self, event: AuditEvent) -> None: ...


class NullAudit:
    """An AuditSink that records nothing."""

    def record(self, event: AuditEvent) -> None:
        pass


# --- who is asking, and may they ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """The caller: under mTLS the certificate CN and its DNS and URI SANs, or a fixed name for local
    dev clients.

    ``alt_names`` are typed, ``dns:NAME`` (lower case) and ``uri:NAME``. A certificate without a CN
    is named by its first typed SAN and has ``has_cn`` False: only such a certificate may be matched
    to a ``[[clients]]`` entry through a SAN that entry opts in to (``signer.api.auth.match_client``).
    """

    name: str
    alt_names: tuple[str, ...] = ()
    has_cn: bool = True


LOCAL_CLIENT = ClientIdentity(name="local")


class Operation(enum.StrEnum):
    """What a client may be permitted to do (config: clients[].operations)."""

    SIGN_ATTESTATION = "sign_attestation"
    SIGN_PROPOSAL = "sign_proposal"
    SIGN_GENERIC = "sign_generic"
    SIGN_VOLUNTARY_EXIT = "sign_voluntary_exit"
    SIGN_DEPOSIT = "sign_deposit"
    """DOMAIN_DEPOSIT through Sign/Multisign: a deposit names the withdrawal credentials, so a client
    that may sign one could fund a not-yet-deposited key with its own; never part of sign_generic."""
    COMETBFT_VOTE = "cometbft_vote"
    COMETBFT_PROPOSAL = "cometbft_proposal"
    ACCOUNT_MANAGEMENT = "account_management"
    PROTECTION_IMPORT = "protection_import"
    PROTECTION_EXPORT = "protection_export"
    KEY_ADMIN = "key_admin"
    DKG = "dkg"
    """The v1.DKG service: only the other signers of distributed accounts (configured peers)."""


class ValidatorKeys(Protocol):
    """Which validator a key signs for, where that is not the key itself: a share of a distributed
    account signs for its composite public key (signer.distributed.accounts)."""

    def history_key(self, public_key: bytes) -> bytes:
        """The public key the slashing history of ``public_key`` is kept under (itself, or for a
        share, the account's composite key: the validator's key on chain)."""
        ...

    def key_for(self, public_key: bytes) -> bytes | None:
        """The key this signer signs with for validator ``public_key`` when that is not a key of its
        own (the share it holds of a composite key), else None."""
        ...


class Authorizer(Protocol):
    """Decides whether a client may do an operation with a key. Raises AccessDenied, saying why."""

    def authorize(self, client: ClientIdentity, operation: Operation, key: KeyInfo | None) -> None: ...

    def permits(self, client: ClientIdentity, operation: Operation, key: KeyInfo | None) -> bool:
        """The same decision as ``authorize``, without recording or raising (what may a client see)."""
        ...


class AllowAll:
    """Every client may do everything: the dev default on loopback, and the seam for auth."""

    def authorize(self, client: ClientIdentity, operation: Operation, key: KeyInfo | None) -> None:
        pass

    def permits(self, client: ClientIdentity, operation: Operation, key: KeyInfo | None) -> bool:
        return True
