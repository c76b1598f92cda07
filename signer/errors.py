"""The error tree of the signer: every refusal is an instance of one of these classes.

No grpc import here. Each class declares its ``status``, a hint of how it goes on the wire;
``signer.api.status.TABLE`` maps each hint to the gRPC code, Dirk ResponseState, admin status,
outcome label and HTTP status, and nothing else decides that. Messages say why and never contain
secret material.

    SignerError
    ├── RequestError                              the request is wrong             REQUEST_REFUSED
    │   ├── MalformedRequest                                                       MALFORMED
    │   │   └── MalformedDocument
    │   ├── UnknownKey                                                             UNKNOWN_KEY
    │   ├── UnsupportedScheme, WrongNetwork, SigningRootMismatch, ForbiddenDomain,
    │   │   PartialSignatureOnly
    │   ├── KeyLocked                                                              KEY_LOCKED
    │   ├── KeystoreError
    │   │   ├── MalformedKeystore
    │   │   │   └── KdfLimitExceeded
    │   │   └── WrongPassword
    │   ├── ThresholdError
    │   │   └── InvalidParticipantId, DuplicateParticipantId, InvalidThreshold,
    │   │       InvalidPoint, InvalidShare, NotEnoughShares
    │   └── DkgSessionConflict, DkgSessionNotFound
    ├── DkgAborted                                                                 DKG_ABORTED
    ├── AccessDenied                                                               ACCESS_DENIED
    │   └── AdminRefusal
    │       └── OneTimeCodeMissing, SecondFactorNotConfigured, UnknownOperator,
    │           WrongOneTimeCode, OneTimeCodeExpired, OneTimeCodeReplayed,
    │           SameOperatorApproval, UnknownPendingOperation, PendingOperationExpired,
    │           PendingOperationDone, PendingKindMismatch
    ├── RateLimited                                                                RATE_LIMITED
    │   └── SecondFactorLockedOut, TooManyPending
    ├── NotSafeToSign                             slashing protection refused      NOT_SAFE
    │   └── DoubleBlockProposal, SlotNotAboveLowerBound, DoubleVote, SurroundingVote,
    │       SurroundedVote, SourceExceedsTarget, SourceBelowLowerBound,
    │       TargetNotAboveLowerBound, ProtectionNotInitialized, HeightRegression,
    │       RoundRegression, StepRegression, ConflictingConsensusMessage
    ├── ProtectionStoreError                                                       STORE_UNAVAILABLE
    │   └── SchemaTooNew
    ├── InterchangeError                                                           DOCUMENT_REFUSED
    ├── KeyModuleError                                                             MODULE_UNAVAILABLE
    │   ├── WrongPin                                                               MODULE_PIN
    │   ├── ModuleTampered                                                         MODULE_TAMPERED
    │   └── DuplicateKey
    ├── DataDirLocked                                                              INTERNAL
    ├── ConfigError                                                                DOCUMENT_REFUSED
    │   └── WeakPin
    └── InternalError                                                              INTERNAL
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar


class Status(enum.Enum):
    """How an error goes on the wire: one row of ``signer.api.status.TABLE`` each."""

    MALFORMED = "malformed"
    """The request cannot be read (a field missing, of the wrong length, out of range)."""
    REQUEST_REFUSED = "request_refused"
    """Readable, but not signable as asked: another network, another scheme, a forbidden domain."""
    UNKNOWN_KEY = "unknown_key"
    KEY_LOCKED = "key_locked"
    ACCESS_DENIED = "access_denied"
    RATE_LIMITED = "rate_limited"
    NOT_SAFE = "not_safe"
    """Slashing protection refused."""
    DOCUMENT_REFUSED = "document_refused"
    """An imported document or a configuration value was refused."""
    STORE_UNAVAILABLE = "store_unavailable"
    MODULE_UNAVAILABLE = "module_unavailable"
    MODULE_PIN = "module_pin"
    MODULE_TAMPERED = "module_tampered"
    DKG_ABORTED = "dkg_aborted"
    """A distributed key generation was aborted (gRPC ABORTED, the culprit in a trailer)."""
    INTERNAL = "internal"


class SignerError(Exception):
    """Base of every error the signer raises on purpose."""

    retryable: bool = False
    status: ClassVar[Status] = Status.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- request errors -------------------------------------------------------------------------


class RequestError(SignerError):
    """The request itself is wrong (INVALID_ARGUMENT)."""

    status = Status.REQUEST_REFUSED


class MalformedRequest(RequestError):
    """A field is missing, of the wrong length, or out of range."""

    status = Status.MALFORMED


class MalformedDocument(MalformedRequest):
    """An untrusted JSON document is too large, nested too deep, or not valid JSON (signer.jsondoc)."""


class UnknownKey(RequestError):
    """No key with that public key or account name is loaded (NOT_FOUND)."""

    status = Status.UNKNOWN_KEY


class UnsupportedScheme(RequestError):
    """The key's scheme cannot do what was asked (e.g. a BLS key for a CometBFT vote)."""


class KeyLocked(RequestError):
    """The account exists but is locked (Dirk's AccountManager/Lock)."""

    status = Status.KEY_LOCKED


class WrongNetwork(RequestError):
    """The domain or fork data does not belong to the network this signer is bound to."""


class SigningRootMismatch(RequestError):
    """The signing root a client sent with its message is not the one the signer computes for it."""


class ForbiddenDomain(RequestError):
    """The domain may not be signed through this call (e.g. proposer domain through Sign)."""


class PartialSignatureOnly(RequestError):
    """The key named is (the composite key of) a share of a distributed account: this signer's
    signature would be partial, which only a combining client (Dirk's API, as Vouch) can use."""


class KeystoreError(RequestError):
    """An EIP-2335 keystore could not be imported (the message says why; never the password)."""


class MalformedKeystore(KeystoreError):
    """The keystore JSON does not have the EIP-2335 shape, or uses an unsupported KDF/cipher."""


class KdfLimitExceeded(MalformedKeystore):
    """The keystore's KDF would need more memory or work than the signer allows (refused before it
    runs); the message names the parameters and the limit."""


class WrongPassword(KeystoreError):
    """The keystore checksum does not match: wrong password (or a corrupted keystore)."""


# --- distributed (threshold) accounts -------------------------------------------------------


class ThresholdError(RequestError):
    """Threshold-BLS input refused: participant ids, threshold, points or shares (INVALID_ARGUMENT)."""


class InvalidParticipantId(ThresholdError):
    """A participant id is 0 (where the secret itself lives) or not a uint64."""


class DuplicateParticipantId(ThresholdError):
    """The same participant id appears twice."""


class InvalidThreshold(ThresholdError):
    """The signing threshold is not more than half of the participants (two conflicting messages
    could then both reach it), above their number, or does not fit the verification vector."""


class InvalidPoint(ThresholdError):
    """Not a canonical compressed point of the prime-order subgroup, or the identity where a key
    or a signature is expected."""


class InvalidShare(ThresholdError):
    """A secret share is out of range, or does not match its verification vector."""


class NotEnoughShares(ThresholdError):
    """Fewer partial signatures or public key shares than the signing threshold."""


class DkgSessionConflict(RequestError):
    """A distributed key generation for that account is already in progress."""


class DkgSessionNotFound(RequestError):
    """No live distributed key generation for that account (never prepared, aborted, committed or
    expired), or the caller is not the one that started it."""


class DkgAborted(SignerError):
    """A distributed key generation was aborted; nothing of the session was kept.

    ``culprit`` is the participant id at fault when it is known (e.g. the sender of a contribution
    that does not match its verification vector), else None.
    """

    status = Status.DKG_ABORTED

    def __init__(self, message: str, culprit: int | None = None) -> None:
        super().__init__(message)
        self.culprit = culprit


# --- access and limits ----------------------------------------------------------------------


class AccessDenied(SignerError):
    """The client may not use this key or operation (PERMISSION_DENIED)."""

    status = Status.ACCESS_DENIED


class RateLimited(SignerError):
    """The client is over its rate, or the signer over its in-flight cap (RESOURCE_EXHAUSTED)."""

    status = Status.RATE_LIMITED

    retryable = True

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# --- admin: the operator's second factor and two-person approval (signer.totp, signer.approval) --


class AdminRefusal(AccessDenied):
    """A refusal of an admin call by its second factor or its approval. ``name`` (a security event
    label, signer_security_events_total) starts the message, so every front names the refusal."""

    name: str = "admin_refused"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.name}: {message}")


class OneTimeCodeMissing(AdminRefusal):
    """The call carries no operator or no one-time code."""

    name = "otp_missing"


class SecondFactorNotConfigured(AdminRefusal):
    """The client's ``[[clients]]`` entry names no operators, so no admin call can carry a valid code."""

    name = "otp_not_configured"


class UnknownOperator(AdminRefusal):
    """The operator named is not one of the client's operators."""

    name = "otp_unknown_operator"


class WrongOneTimeCode(AdminRefusal):
    name = "otp_wrong"


class OneTimeCodeExpired(AdminRefusal):
    """The code is the operator's, but from a time step before the accepted window."""

    name = "otp_expired"


class OneTimeCodeReplayed(AdminRefusal):
    """The code (or a later one of the same operator) was accepted before: each code is single-use."""

    name = "otp_replayed"


class SecondFactorLockedOut(RateLimited):
    """Too many failed codes for this operator through this client: refused, code unchecked, until
    ``retry_after_s`` has passed."""

    name = "otp_locked_out"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(f"{self.name}: {message}", retry_after_s)


class SameOperatorApproval(AdminRefusal):
    """The operator who asked for an operation may not approve it: two different persons must."""

    name = "approval_same_operator"


class UnknownPendingOperation(AdminRefusal):
    """No pending operation has this id (never made, or forgotten by a restart)."""

    name = "approval_unknown"


class PendingOperationExpired(AdminRefusal):
    """The pending operation waited longer than ``admin.approval_expiry_s``; it is forgotten."""

    name = "approval_expired"


class PendingOperationDone(AdminRefusal):
    """The pending operation was approved (and ran) already: an approval runs it once."""

    name = "approval_done"


class PendingKindMismatch(AdminRefusal):
    """The approval call is for another kind of operation than the pending one."""

    name = "approval_wrong_kind"


class TooManyPending(RateLimited):
    """``admin.max_pending`` operations are waiting already."""

    name = "approval_too_many_pending"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(f"{self.name}: {message}", retry_after_s)


# --- slashing protection --------------------------------------------------------------------


class NotSafeToSign(SignerError):
    """Signing this message could get the validator slashed. Never retryable.

    ``evidence`` describes the conflicting record (never secret material).
    """

    status = Status.NOT_SAFE

    offence: str = "not_safe"

    def __init__(self, message: str, evidence: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.evidence: dict[str, Any] = evidence or {}


class DoubleBlockProposal(NotSafeToSign):
    offence = "double_block_proposal"


class SlotNotAboveLowerBound(NotSafeToSign):
    offence = "slot_not_above_lower_bound"


class DoubleVote(NotSafeToSign):
    offence = "double_vote"


class SurroundingVote(NotSafeToSign):
    offence = "surrounding_vote"


class SurroundedVote(NotSafeToSign):
    offence = "surrounded_vote"


class SourceExceedsTarget(NotSafeToSign):
    offence = "source_exceeds_target"


class SourceBelowLowerBound(NotSafeToSign):
    offence = "source_below_lower_bound"


class TargetNotAboveLowerBound(NotSafeToSign):
    offence = "target_not_above_lower_bound"


class ProtectionNotInitialized(NotSafeToSign):
    """The protection store is new or empty while the key module holds keys: a lost history, not a
    fresh start. Nothing signs until history is imported or the operator declares, once, that the
    keys have never signed (docs/ARCHITECTURE.md, "Slashing rules")."""

    offence = "protection_not_initialized"


class HeightRegression(NotSafeToSign):
    offence = "height_regression"


class RoundRegression(NotSafeToSign):
    offence = "round_regression"


class StepRegression(NotSafeToSign):
    offence = "step_regression"


class ConflictingConsensusMessage(NotSafeToSign):
    offence = "conflicting_consensus_message"


# --- infrastructure -------------------------------------------------------------------------


class ProtectionStoreError(SignerError):
    """The slashing-protection store failed or is unreachable: signing is refused (UNAVAILABLE)."""

    status = Status.STORE_UNAVAILABLE

    retryable = True


class InterchangeError(SignerError):
    """An EIP-3076 (or priv_validator_state) document was refused on import; nothing was written."""

    status = Status.DOCUMENT_REFUSED


class SchemaTooNew(ProtectionStoreError):
    """The database schema is newer than this code knows: refuse to start."""

    retryable = False


class KeyModuleError(SignerError):
    """The key module (HSM or emulated) failed: wrong PIN, token gone, tampered file."""

    status = Status.MODULE_UNAVAILABLE

    retryable = True


class WrongPin(KeyModuleError):
    status = Status.MODULE_PIN

    retryable = False


class ModuleTampered(KeyModuleError):
    status = Status.MODULE_TAMPERED

    retryable = False


class DuplicateKey(KeyModuleError):
    """The key module lists one account name or one public key twice: the key ring refuses to index
    it (a request could resolve to either key)."""

    retryable = False


class DataDirLocked(SignerError):
    """Another signer process holds the data directory's lock file: two signers on one data
    directory (and SQLite store) must never run at once."""


class ConfigError(SignerError):
    """The configuration is invalid; the message names the key path."""

    status = Status.DOCUMENT_REFUSED


class WeakPin(ConfigError):
    """A new emulated-module PIN does not satisfy the PIN policy (too short, a common or published
    PIN, a repeated pattern); the message names the rule, never the PIN (signer.keys.pin_policy)."""


class InternalError(SignerError):
    """A bug or an unexpected state (INTERNAL)."""

    status = Status.INTERNAL
