"""Distributed key generation between signers: Joint-Feldman in Dirk's flow, as a state machine.

The signer that receives ``AccountManager.Generate`` for a distributed account is the initiator.
It drives every participant (itself included) through the eth2-signer-api ``v1.DKG`` service:

1. **Prepare** (account, threshold, participants): each participant opens a session named by the
   account and draws its own random polynomial of degree threshold-1.
2. **Execute** (account): each participant swaps contributions with every participant of a higher
   id through **Contribute**: it sends its polynomial at the recipient's id with its verification
   vector, and gets the recipient's polynomial at its own id with the recipient's vector back.
   Each side checks what it receives against the vector; a bad contribution aborts the session
   and names the dealer. After every Execute each participant holds one contribution per dealer.
3. **Commit** (account, confirmation data): each participant sums the shares it received into its
   key share and the vectors into the composite vector (element 0: the composite public key), signs
   the confirmation data with its key share, and answers with both.
4. The initiator checks that every participant reports the same composite key and that every
   threshold-subset of the confirmation signatures combines to a valid signature under it, else it
   sends **Abort** everywhere. Abort drops an open session; after a Commit it tells the caller
   which stored share to delete, so that an aborted generation leaves nothing.

``DkgParticipant`` is one signer's side of every session (the DKG service's handlers call it with
the participant id of the authenticated caller); ``generate`` is the initiator's side, talking to
the participants through the ``DkgPeers`` protocol (gRPC in production, direct calls in tests).
No I/O here: the clock and the polynomials are injectable, and storing the committed key share
in the key module is the caller's business. Sessions expire ``timeout_s`` after Prepare (Dirk's
default generation timeout is 70 s). Secret values never appear in a repr or an error.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets as _secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, ParamSpec, Protocol, TypeVar

from signer.crypto import bls
from signer.crypto import threshold as th
from signer.errors import (
    AccessDenied,
    DkgAborted,
    DkgSessionConflict,
    DkgSessionNotFound,
    InvalidThreshold,
    MalformedRequest,
    SignerError,
    ThresholdError,
)

_T = TypeVar("_T")
_P = ParamSpec("_P")

DEFAULT_TIMEOUT_S: Final = 70.0
CONFIRMATION_DATA_LENGTH: Final = 32


# --- the parameters of a session ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A participant: its id (the x at which its share is evaluated) and where its signer listens.
    The same fields as v1.Endpoint."""

    id: int
    name: str
    port: int

    def __post_init__(self) -> None:
        th.check_participant_id(self.id)
        if not self.name:
            raise MalformedRequest(f"participant {self.id} has no host name")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise MalformedRequest(f"participant {self.id} has port {self.port!r}, not in [1, 65535]")

    @property
    def address(self) -> str:
        """host:port (an IPv6 host in brackets), as Dirk's Endpoint.ConnectAddress."""
        host = f"[{self.name}]" if ":" in self.name else self.name
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SessionParameters:
    """What Prepare carries: the account (it names the session), the signing threshold and the
    participants, kept sorted by id. Refuses duplicate or zero ids and a threshold that is not more
    than half of the participants."""

    account: str
    threshold: int
    participants: tuple[Endpoint, ...]

    def __post_init__(self) -> None:
        if not self.account:
            raise MalformedRequest("a distributed key generation needs an account name")
        ordered = tuple(sorted(self.participants, key=lambda p: p.id))
        th.check_participant_ids(p.id for p in ordered)
        th.check_threshold(self.threshold, len(ordered))
        object.__setattr__(self, "participants", ordered)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(p.id for p in self.participants)


def select_participants(own_id: int, peers: Mapping[int, Endpoint], count: int) -> tuple[Endpoint, ...]:
    """The initiator and the ``count - 1`` configured peers of the lowest ids. (Dirk takes any
    ``count`` of its peers, not always itself; ours always holds a share of what it generates.)"""
    if own_id not in peers:
        raise MalformedRequest(f"this signer's id {own_id} is not among the configured peers")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= len(peers):
        raise MalformedRequest(f"{count} participants asked for, {len(peers)} peers configured")
    others = sorted(i for i in peers if i != own_id)[: count - 1]
    return tuple(sorted((peers[own_id], *(peers[i] for i in others)), key=lambda p: p.id))


# --- what participants exchange and keep ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contribution:
    """One dealer's contribution to one participant: the dealer's polynomial at the recipient's id
    (``share.participant_id`` is the recipient) and the dealer's verification vector. As
    ContributeRequest/ContributeResponse: ``share.to_bytes()`` and ``verification_vector.commitments``."""

    account: str
    dealer_id: int
    share: th.SecretShare
    verification_vector: th.VerificationVector

    @property
    def recipient_id(self) -> int:
        return self.share.participant_id


@dataclass(frozen=True, slots=True)
class CommitResult:
    """One participant's outcome of a DKG: its key share (secret; to seal in the key module), its
    public share, the summed verification vector (element 0 is the composite public key, the
    validator's key) and its signature of the confirmation data."""

    parameters: SessionParameters
    key_share: th.SecretShare
    public_share: bytes
    verification_vector: th.VerificationVector
    confirmation_signature: bytes

    @property
    def participant_id(self) -> int:
        return self.key_share.participant_id

    @property
    def composite_public_key(self) -> bytes:
        return self.verification_vector.public_key


@dataclass(frozen=True, slots=True)
class CommitResponse:
    """What a participant answers to Commit (v1.CommitResponse)."""

    public_key: bytes
    confirmation_signature: bytes


# --- one signer's side: the sessions it takes part in -------------------------------------------


@dataclass(slots=True)
class _Session:
    parameters: SessionParameters
    initiator_id: int
    started_at: float
    polynomial: th.Polynomial = field(repr=False)
    vector: th.VerificationVector
    received: dict[int, Contribution] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class _Committed:
    parameters: SessionParameters
    initiator_id: int
    committed_at: float
    public_share: bytes


class DkgParticipant:
    """This signer's side of every DKG it takes part in, keyed by account (as Dirk's process
    service). ``sender_id`` arguments are the participant id of the authenticated caller; a caller
    that is not a configured peer is refused. Thread-safe: one lock serialises every call."""

    __slots__ = ("_clock", "_committed", "_lock", "_own_id", "_peers", "_polynomials", "_sessions", "_timeout_s")

    def __init__(
        self,
        own_id: int,
        peers: Mapping[int, Endpoint],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        polynomials: Callable[[int], th.Polynomial] = th.Polynomial.random,
    ) -> None:
        th.check_participant_id(own_id)
        if own_id not in peers:
            raise MalformedRequest(f"this signer's id {own_id} is not among the configured peers")
        for peer_id, endpoint in peers.items():
            if endpoint.id != peer_id:
                raise MalformedRequest(f"peer {peer_id} is configured with the endpoint of participant {endpoint.id}")
        if not timeout_s > 0:
            raise MalformedRequest("the DKG session timeout must be positive")
        self._own_id = own_id
        self._peers = dict(peers)
        self._timeout_s = timeout_s
        self._clock = clock
        self._polynomials = polynomials
        self._sessions: dict[str, _Session] = {}
        self._committed: dict[str, _Committed] = {}
        self._lock = threading.Lock()

    @property
    def own_id(self) -> int:
        return self._own_id

    def open_sessions(self) -> tuple[str, ...]:
        """Accounts with a session in progress (not expired)."""
        with self._lock:
            self._expire()
            return tuple(sorted(self._sessions))

    def expire(self) -> tuple[str, ...]:
        """Drop sessions (and commit records) older than the timeout; return their accounts."""
        with self._lock:
            return self._expire()

    # --- the DKG service's calls ------------------------------------------------------------

    def prepare(self, sender_id: int, parameters: SessionParameters) -> None:
        """Open a session and draw this participant's polynomial (and its own contribution)."""
        with self._lock:
            self._expire()
            self._check_peer(sender_id)
            if self._own_id not in parameters.ids:
                raise MalformedRequest(f"this signer (participant {self._own_id}) is not among the participants")
            for participant in parameters.participants:
                if self._peers.get(participant.id) != participant:
                    raise AccessDenied(
                        f"participant {participant.id} at {participant.address} is not a configured peer"
                    )
            account = parameters.account
            if account in self._sessions or account in self._committed:
                raise DkgSessionConflict(f"a key generation for {account!r} is already in progress")
            polynomial = self._polynomials(parameters.threshold)
            if polynomial.threshold != parameters.threshold:
                raise MalformedRequest("the polynomial source gave a polynomial of the wrong degree")
            vector = polynomial.verification_vector()
            session = _Session(parameters, sender_id, self._clock(), polynomial, vector)
            own = Contribution(account, self._own_id, polynomial.share(self._own_id), vector)
            session.received[self._own_id] = own
            self._sessions[account] = session

    def execute(self, sender_id: int, account: str) -> tuple[Contribution, ...]:
        """The contributions this participant sends (Contribute) on Execute: one to each participant
        of a higher id, whose reply goes to ``accept``. Only the initiator may ask."""
        with self._lock:
            session = self._session(account, sender_id, initiator_only=True)
            return tuple(self._outgoing(session, i) for i in session.parameters.ids if i > self._own_id)

    def contribute(
        self, dealer_id: int, account: str, secret: bytes, verification_vector: Sequence[bytes]
    ) -> Contribution:
        """A ContributeRequest from ``dealer_id``: check it against its vector and keep it; answer
        with this participant's contribution to the dealer. A bad one aborts the session here
        (DkgAborted naming the dealer)."""
        with self._lock:
            session = self._session(account, dealer_id, initiator_only=False)
            self._receive(session, dealer_id, secret, verification_vector)
            return self._outgoing(session, dealer_id)

    def accept(self, dealer_id: int, account: str, secret: bytes, verification_vector: Sequence[bytes]) -> None:
        """The ContributeResponse of ``dealer_id`` to a contribution this participant sent it."""
        with self._lock:
            session = self._session(account, dealer_id, initiator_only=False)
            self._receive(session, dealer_id, secret, verification_vector)

    def commit(self, sender_id: int, account: str, confirmation_data: bytes) -> CommitResult:
        """Sum the contributions into this participant's key share and the composite vector, and
        sign the confirmation data. Needs one contribution from every participant. The session
        becomes a commit record until it expires, so that a later Abort can undo the stored share."""
        with self._lock:
            session = self._session(account, sender_id, initiator_only=True)
            missing = [i for i in session.parameters.ids if i not in session.received]
            if missing:
                self._sessions.pop(account)
                raise DkgAborted(
                    f"key generation for {account!r} aborted: no contribution from participants {missing}",
                    culprit=missing[0] if len(missing) == 1 else None,
                )
            contributions = [session.received[i] for i in session.parameters.ids]
            try:
                key_share = th.sum_shares(c.share for c in contributions)
                vector = th.sum_vectors([c.verification_vector for c in contributions])
            except ThresholdError as exc:
                self._sessions.pop(account)
                raise DkgAborted(f"key generation for {account!r} aborted: {exc.message}") from exc
            public_share = key_share.public_key()
            if vector.public_share(self._own_id) != public_share:  # cannot happen if every share verified
                self._sessions.pop(account)
                raise DkgAborted(f"key generation for {account!r} aborted: the key share does not match the vector")
            signature = key_share.sign(bytes(confirmation_data))
            self._sessions.pop(account)
            self._committed[account] = _Committed(session.parameters, session.initiator_id, self._clock(), public_share)
            return CommitResult(session.parameters, key_share, public_share, vector, signature)

    def abort(self, sender_id: int, account: str) -> bytes | None:
        """Drop the session for ``account``. Returns None if nothing had been committed, else the
        public share that Commit produced: the caller deletes that stored share. The initiator and
        any participant of the session may abort it before Commit; after, only the initiator."""
        with self._lock:
            self._expire()
            self._check_peer(sender_id)
            session = self._sessions.get(account)
            if session is not None:
                self._check_party(session.parameters, session.initiator_id, sender_id, account)
                del self._sessions[account]
                return None
            committed = self._committed.get(account)
            if committed is not None:
                # Only the initiator checks the Commit answers, so only it may undo them: another
                # participant could otherwise delete everyone's share of a good account.
                if sender_id != committed.initiator_id:
                    raise AccessDenied(f"only the initiator of the key generation for {account!r} may undo its commit")
                del self._committed[account]
                return committed.public_share
            raise DkgSessionNotFound(f"no key generation for {account!r} in progress")

    # --- inside the lock ------------------------------------------------------------------

    def _expire(self) -> tuple[str, ...]:
        now = self._clock()
        expired = [a for a, s in self._sessions.items() if now - s.started_at > self._timeout_s]
        for account in expired:
            del self._sessions[account]
        done = [a for a, c in self._committed.items() if now - c.committed_at > self._timeout_s]
        for account in done:
            del self._committed[account]
        return tuple(sorted(expired + done))

    def _check_peer(self, sender_id: int) -> None:
        if sender_id not in self._peers:
            raise AccessDenied(f"the caller (participant {sender_id}) is not a configured peer")

    @staticmethod
    def _check_party(parameters: SessionParameters, initiator_id: int, sender_id: int, account: str) -> None:
        if sender_id != initiator_id and sender_id not in parameters.ids:
            raise AccessDenied(f"participant {sender_id} takes no part in the key generation for {account!r}")

    def _session(self, account: str, sender_id: int, *, initiator_only: bool) -> _Session:
        self._expire()
        self._check_peer(sender_id)
        session = self._sessions.get(account)
        if session is None:
            raise DkgSessionNotFound(f"no key generation for {account!r} in progress")
        if initiator_only and sender_id != session.initiator_id:
            raise AccessDenied(f"only the initiator of the key generation for {account!r} may drive it")
        if not initiator_only and (sender_id == self._own_id or sender_id not in session.parameters.ids):
            raise AccessDenied(f"participant {sender_id} is not a peer in the key generation for {account!r}")
        return session

    def _outgoing(self, session: _Session, recipient_id: int) -> Contribution:
        share = session.polynomial.share(recipient_id)
        return Contribution(session.parameters.account, self._own_id, share, session.vector)

    def _receive(self, session: _Session, dealer_id: int, secret: bytes, verification_vector: Sequence[bytes]) -> None:
        account = session.parameters.account
        try:
            vector = th.VerificationVector(tuple(bytes(c) for c in verification_vector))
            if vector.threshold != session.parameters.threshold:
                raise InvalidThreshold(
                    f"a verification vector of {vector.threshold} elements for a threshold of "
                    f"{session.parameters.threshold}"
                )
            share = th.SecretShare.from_bytes(self._own_id, bytes(secret))
            vector.verify_share(share)
        except ThresholdError as exc:
            del self._sessions[account]
            raise DkgAborted(
                f"key generation for {account!r} aborted: bad contribution from participant {dealer_id}: {exc.message}",
                culprit=dealer_id,
            ) from exc
        contribution = Contribution(account, dealer_id, share, vector)
        earlier = session.received.get(dealer_id)
        if earlier is not None and earlier != contribution:
            del self._sessions[account]
            raise DkgAborted(
                f"key generation for {account!r} aborted: participant {dealer_id} sent two different contributions",
                culprit=dealer_id,
            )
        session.received[dealer_id] = contribution


def run_execute(
    participant: DkgParticipant,
    sender_id: int,
    account: str,
    send: Callable[[Contribution], tuple[bytes, Sequence[bytes]]],
) -> None:
    """Execute at one participant: send each outgoing contribution (``send`` returns the
    recipient's ContributeResponse: secret and verification vector) and accept the reply. If a
    recipient cannot be reached or refuses, the session is aborted here too and DkgAborted names it."""
    for contribution in participant.execute(sender_id, account):
        recipient = contribution.recipient_id
        try:
            secret, vector = send(contribution)
        except Exception as exc:
            _drop(participant, account)
            if isinstance(exc, DkgAborted):
                raise
            raise DkgAborted(
                f"key generation for {account!r} aborted: participant {recipient} did not take a contribution: "
                f"{_describe(exc)}",
                culprit=recipient,
            ) from exc
        participant.accept(recipient, account, secret, vector)


def _drop(participant: DkgParticipant, account: str) -> None:
    with contextlib.suppress(SignerError):  # already gone (aborted by a bad contribution, or expired)
        participant.abort(participant.own_id, account)


def _describe(exc: BaseException) -> str:
    """An error for a message: our own errors carry no secrets; of others, only the type."""
    return exc.message if isinstance(exc, SignerError) else type(exc).__name__


# --- the initiator's side ---------------------------------------------------------------------


class DkgPeers(Protocol):
    """The v1.DKG service of each participant (the initiator included), as the initiator reaches it."""

    def prepare(self, participant: Endpoint, parameters: SessionParameters) -> None: ...

    def execute(self, participant: Endpoint, account: str) -> None: ...

    def commit(self, participant: Endpoint, account: str, confirmation_data: bytes) -> CommitResponse: ...

    def abort(self, participant: Endpoint, account: str) -> None: ...


def generate(parameters: SessionParameters, peers: DkgPeers, *, confirmation_data: bytes | None = None) -> bytes:
    """Run a DKG as its initiator and return the composite public key. On any failure every
    participant that was prepared is told to Abort (participants that cannot be reached drop the
    session when it expires) and DkgAborted is raised, naming the culprit when known."""
    account = parameters.account
    data = _secrets.token_bytes(CONFIRMATION_DATA_LENGTH) if confirmation_data is None else confirmation_data
    prepared: list[Endpoint] = []
    try:
        for participant in parameters.participants:
            _call("Prepare", participant, peers.prepare, participant, parameters)
            prepared.append(participant)
        for participant in parameters.participants:
            _call("Execute", participant, peers.execute, participant, account)
        responses = {p.id: _call("Commit", p, peers.commit, p, account, data) for p in parameters.participants}
        return verify_commit(parameters, data, responses)
    except DkgAborted as exc:
        unreachable = _abort_all(prepared, peers, account)
        if not unreachable:
            raise
        raise DkgAborted(
            f"{exc.message} (participants {unreachable} could not be told to abort; their session expires)",
            culprit=exc.culprit,
        ) from exc


def _call(step: str, participant: Endpoint, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """One call to a participant; any failure becomes DkgAborted naming it (unless it names another)."""
    try:
        return call(*args, **kwargs)
    except DkgAborted:
        raise
    except Exception as exc:
        raise DkgAborted(
            f"key generation aborted: participant {participant.id} ({participant.address}) failed at {step}: "
            f"{_describe(exc)}",
            culprit=participant.id,
        ) from exc


def _abort_all(participants: Sequence[Endpoint], peers: DkgPeers, account: str) -> list[int]:
    unreachable = []
    for participant in participants:
        try:
            peers.abort(participant, account)
        except DkgSessionNotFound:
            pass  # it had dropped the session itself (e.g. on a bad contribution)
        except Exception:  # best effort: the session expires there anyway
            unreachable.append(participant.id)
    return unreachable


def verify_commit(
    parameters: SessionParameters, confirmation_data: bytes, responses: Mapping[int, CommitResponse]
) -> bytes:
    """The initiator's check of the Commit answers: every participant reports the same composite
    key, and every threshold-subset of the confirmation signatures combines into one signature that
    verifies under it. Returns the composite key; DkgAborted otherwise."""
    account = parameters.account
    missing = [i for i in parameters.ids if i not in responses]
    if missing:
        raise DkgAborted(f"key generation for {account!r}: no Commit answer from participants {missing}")
    keys: dict[bytes, list[int]] = {}
    for participant_id in parameters.ids:
        keys.setdefault(bytes(responses[participant_id].public_key), []).append(participant_id)
    if len(keys) != 1:
        # No culprit: a dealer that sent different vectors to different participants makes its
        # victims, not itself, report the odd key.
        described = "; ".join(f"{ids} report {key[:4].hex()}..." for key, ids in keys.items())
        raise DkgAborted(f"key generation for {account!r}: participants report different composite keys ({described})")
    (composite,) = keys
    if not bls.key_validate(composite):
        raise DkgAborted(f"key generation for {account!r}: the composite key is not a valid public key")
    signatures = {i: bytes(responses[i].confirmation_signature) for i in parameters.ids}
    first: bytes | None = None
    for subset in itertools.combinations(parameters.ids, parameters.threshold):
        try:
            combined = th.combine_signatures({i: signatures[i] for i in subset}, parameters.threshold)
        except ThresholdError as exc:
            raise DkgAborted(f"key generation for {account!r}: {exc.message}") from exc
        if first is None:
            if not bls.verify(composite, confirmation_data, combined):
                raise DkgAborted(
                    f"key generation for {account!r}: the confirmation signatures of participants {list(subset)} "
                    "do not combine into a signature under the composite key"
                )
            first = combined
        elif combined != first:
            raise DkgAborted(
                f"key generation for {account!r}: the confirmation signatures of participants {list(subset)} "
                "combine into a different signature than the others"
            )
    return composite
