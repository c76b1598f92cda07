"""signer.distributed.dkg: Joint-Feldman key generation in Dirk's flow, between in-memory signers.

The cluster below plays what the gRPC DKG service will do (issue 17): each signer is a real
DkgParticipant; the initiator's DkgPeers calls go straight to the participant objects, and
Contribute passes the wire fields (32-byte secret, compressed commitments) between them. A dict of
committed results stands in for the key module. Fakes only for the network and the module, which
come with the service integration.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import pytest

from signer.crypto import bls
from signer.crypto import threshold as th
from signer.distributed import dkg
from signer.errors import (
    AccessDenied,
    DkgAborted,
    DkgSessionConflict,
    DkgSessionNotFound,
    DuplicateParticipantId,
    InvalidParticipantId,
    InvalidThreshold,
    MalformedRequest,
)
from tests.fakes import FakeClock

ACCOUNT = "Distributed/1"
MESSAGE = b"\x42" * 32

Tamper = Callable[[int, int, bytes, Sequence[bytes]], tuple[bytes, Sequence[bytes]]]


def _untouched(dealer: int, recipient: int, secret: bytes, vector: Sequence[bytes]) -> tuple[bytes, Sequence[bytes]]:
    return secret, vector


class Cluster:
    """n in-memory signers; ``initiator`` drives them through dkg.generate (the DkgPeers side)."""

    def __init__(self, count: int, *, initiator: int = 1, timeout_s: float = 70.0) -> None:
        self.clock = FakeClock()
        self.peers = {i: dkg.Endpoint(i, f"signer-{i}", 8880 + i) for i in range(1, count + 1)}
        self.nodes = {i: dkg.DkgParticipant(i, self.peers, timeout_s=timeout_s, clock=self.clock) for i in self.peers}
        self.initiator = initiator
        self.stored: dict[tuple[int, str], dkg.CommitResult] = {}  # the key modules
        self.tamper: Tamper = _untouched
        self.down: set[int] = set()
        self.calls: list[tuple[str, int]] = []

    def parameters(self, threshold: int, account: str = ACCOUNT) -> dkg.SessionParameters:
        return dkg.SessionParameters(account, threshold, tuple(self.peers.values()))

    def _reach(self, step: str, participant: dkg.Endpoint) -> dkg.DkgParticipant:
        self.calls.append((step, participant.id))
        if participant.id in self.down:
            raise ConnectionError(f"signer {participant.id} is down")
        return self.nodes[participant.id]

    # --- DkgPeers, as the initiator
    def prepare(self, participant: dkg.Endpoint, parameters: dkg.SessionParameters) -> None:
        self._reach("prepare", participant).prepare(self.initiator, parameters)

    def execute(self, participant: dkg.Endpoint, account: str) -> None:
        node = self._reach("execute", participant)
        dkg.run_execute(node, self.initiator, account, lambda c: self._contribute(node.own_id, c))

    def commit(self, participant: dkg.Endpoint, account: str, confirmation_data: bytes) -> dkg.CommitResponse:
        result = self._reach("commit", participant).commit(self.initiator, account, confirmation_data)
        self.stored[(participant.id, account)] = result
        return dkg.CommitResponse(result.composite_public_key, result.confirmation_signature)

    def abort(self, participant: dkg.Endpoint, account: str) -> None:
        undo = self._reach("abort", participant).abort(self.initiator, account)
        if undo is not None:
            stored = self.stored.pop((participant.id, account))
            assert stored.public_share == undo

    # --- Contribute between two signers, on the wire's fields
    def _contribute(self, dealer: int, contribution: dkg.Contribution) -> tuple[bytes, Sequence[bytes]]:
        recipient = contribution.recipient_id
        if recipient in self.down:
            raise ConnectionError(f"signer {recipient} is down")
        secret, vector = self.tamper(
            dealer, recipient, contribution.share.to_bytes(), contribution.verification_vector.commitments
        )
        reply = self.nodes[recipient].contribute(dealer, contribution.account, secret, vector)
        return self.tamper(recipient, dealer, reply.share.to_bytes(), reply.verification_vector.commitments)

    def generate(self, threshold: int, account: str = ACCOUNT) -> bytes:
        return dkg.generate(self.parameters(threshold, account), self)

    def results(self, account: str = ACCOUNT) -> dict[int, dkg.CommitResult]:
        return {i: r for (i, a), r in self.stored.items() if a == account}

    def assert_nothing_left(self, account: str = ACCOUNT) -> None:
        assert self.results(account) == {}
        for node in self.nodes.values():
            assert node.open_sessions() == ()
            with pytest.raises(DkgSessionNotFound):
                node.abort(self.initiator, account)


# ------------------------------------------------------------------------------ a whole DKG


def test_two_of_three_dkg_gives_every_participant_the_same_composite_key_and_its_own_share() -> None:
    cluster = Cluster(3)
    composite = cluster.generate(2)
    results = cluster.results()
    assert sorted(results) == [1, 2, 3]
    assert bls.key_validate(composite)
    assert {r.composite_public_key for r in results.values()} == {composite}
    assert len({r.public_share for r in results.values()}) == 3
    assert len({r.verification_vector for r in results.values()}) == 1
    for participant_id, result in results.items():
        assert result.participant_id == participant_id
        assert result.key_share.public_key() == result.public_share
        assert result.verification_vector.public_share(participant_id) == result.public_share
        assert result.verification_vector.threshold == 2
        assert result.parameters.threshold == 2
        result.verification_vector.verify_share(result.key_share)
    for node in cluster.nodes.values():
        assert node.open_sessions() == ()


def test_every_two_subset_of_a_two_of_three_dkg_signs_validly_under_the_composite_key() -> None:
    cluster = Cluster(3)
    composite = cluster.generate(2)
    partials = {i: r.key_share.sign(MESSAGE) for i, r in cluster.results().items()}
    signatures = set()
    for subset in itertools.combinations(sorted(partials), 2):
        combined = th.combine_signatures({i: partials[i] for i in subset}, 2)
        assert bls.verify(composite, MESSAGE, combined)
        signatures.add(combined)
    assert len(signatures) == 1
    for partial in partials.values():  # one share alone signs nothing valid under the composite key
        assert not bls.verify(composite, MESSAGE, partial)
    publics = {i: r.public_share for i, r in cluster.results().items()}
    assert th.combine_public_keys({i: publics[i] for i in (1, 3)}, 2) == composite


def test_three_of_five_dkg_started_by_a_middle_participant() -> None:
    cluster = Cluster(5, initiator=3)
    composite = cluster.generate(3)
    partials = {i: r.key_share.sign(MESSAGE) for i, r in cluster.results().items()}
    for subset in itertools.combinations(sorted(partials), 3):
        assert bls.verify(composite, MESSAGE, th.combine_signatures({i: partials[i] for i in subset}, 3))
    for pair in itertools.combinations(sorted(partials), 2):
        assert not bls.verify(composite, MESSAGE, th.combine_signatures({i: partials[i] for i in pair}, 2))


def test_flow_is_prepare_execute_commit_everywhere() -> None:
    cluster = Cluster(3)
    cluster.generate(2)
    steps = [step for step, _ in cluster.calls]
    assert steps == ["prepare"] * 3 + ["execute"] * 3 + ["commit"] * 3


def test_two_generations_give_unrelated_keys() -> None:
    cluster = Cluster(3)
    assert cluster.generate(2, "Distributed/1") != cluster.generate(2, "Distributed/2")


# ------------------------------------------------------------------------------ bad contributions


def _bump_secret(secret: bytes) -> bytes:
    return ((int.from_bytes(secret, "big") + 1) % bls.CURVE_ORDER).to_bytes(32, "big")


@pytest.mark.parametrize(("dealer", "recipient"), [(1, 3), (3, 1), (2, 3)], ids=["request", "reply", "later-execute"])
def test_bad_contribution_aborts_everywhere_names_the_culprit_and_leaves_nothing(dealer: int, recipient: int) -> None:
    cluster = Cluster(3)

    def tamper(d: int, r: int, secret: bytes, vector: Sequence[bytes]) -> tuple[bytes, Sequence[bytes]]:
        return (_bump_secret(secret), vector) if (d, r) == (dealer, recipient) else (secret, vector)

    cluster.tamper = tamper
    with pytest.raises(DkgAborted, match=f"bad contribution from participant {dealer}") as raised:
        cluster.generate(2)
    assert raised.value.culprit == dealer
    assert ("commit", 1) not in cluster.calls
    assert sorted(i for step, i in cluster.calls if step == "abort") == [1, 2, 3]
    cluster.assert_nothing_left()


@pytest.mark.parametrize(
    "bad_vector",
    [
        lambda v: list(v)[:1],  # a 1-of-3 vector in a 2-of-3 generation
        lambda v: [*v, v[0]],  # one element too many
        lambda v: [v[0], b"\x00" * 48],  # not a point
        lambda v: [bls.G1_IDENTITY, v[1]],  # a zero secret
        lambda v: [v[1], v[0]],  # swapped: the share no longer matches
    ],
    ids=["short", "long", "not-a-point", "identity-key", "swapped"],
)
def test_malformed_verification_vector_aborts_and_names_the_dealer(
    bad_vector: Callable[[Sequence[bytes]], list[bytes]],
) -> None:
    cluster = Cluster(3)

    def tamper(d: int, r: int, secret: bytes, vector: Sequence[bytes]) -> tuple[bytes, Sequence[bytes]]:
        return (secret, bad_vector(vector)) if d == 2 else (secret, vector)

    cluster.tamper = tamper
    with pytest.raises(DkgAborted) as raised:
        cluster.generate(2)
    assert raised.value.culprit == 2
    cluster.assert_nothing_left()


@pytest.mark.parametrize("secret", [b"", b"\x01" * 31, b"\x00" * 32, bls.CURVE_ORDER.to_bytes(32, "big")])
def test_malformed_secret_aborts_and_names_the_dealer(secret: bytes) -> None:
    cluster = Cluster(3)
    cluster.tamper = lambda d, r, s, v: (secret, v) if d == 3 else (s, v)
    with pytest.raises(DkgAborted) as raised:
        cluster.generate(2)
    assert raised.value.culprit == 3
    cluster.assert_nothing_left()


def test_equivocating_dealer_is_caught_at_commit_and_the_stored_shares_are_undone() -> None:
    # Dealer 2 gives participant 1 a contribution from another polynomial: self-consistent, so it
    # verifies, but 1 then sums a different composite key from 2 and 3. The initiator sees it in
    # the Commit answers and aborts; the participants delete the shares they had committed.
    cluster = Cluster(3)
    other = th.Polynomial.random(2)

    def tamper(d: int, r: int, secret: bytes, vector: Sequence[bytes]) -> tuple[bytes, Sequence[bytes]]:
        if (d, r) == (2, 1):
            return other.share(1).to_bytes(), other.verification_vector().commitments
        return secret, vector

    cluster.tamper = tamper
    with pytest.raises(DkgAborted, match="different composite keys") as raised:
        cluster.generate(2)
    assert raised.value.culprit is None  # the victim reports the odd key, not the dealer
    assert [i for step, i in cluster.calls if step == "commit"] == [1, 2, 3]
    cluster.assert_nothing_left()


def test_wrong_confirmation_signature_is_caught_and_undone() -> None:
    cluster = Cluster(3)
    original_commit = cluster.commit

    def commit(participant: dkg.Endpoint, account: str, confirmation_data: bytes) -> dkg.CommitResponse:
        response = original_commit(participant, account, confirmation_data)
        if participant.id == 3:
            return dkg.CommitResponse(response.public_key, bls.sign(bls.random_secret(), confirmation_data))
        return response

    cluster.commit = commit  # type: ignore[method-assign]
    with pytest.raises(DkgAborted, match="confirmation signatures"):
        cluster.generate(2)
    cluster.assert_nothing_left()


@pytest.mark.parametrize("degree_plus_one", [1, 3], ids=["constant", "one-degree-higher"])
def test_consistent_contribution_of_the_wrong_degree_aborts_and_names_the_dealer(degree_plus_one: int) -> None:
    # The share matches the vector, but a polynomial of another degree would change the threshold
    # of the composite key (one degree higher: 2 shares of a "2-of-3" account no longer suffice).
    cluster = Cluster(3)
    wrong = th.Polynomial.random(degree_plus_one)

    def tamper(d: int, r: int, secret: bytes, vector: Sequence[bytes]) -> tuple[bytes, Sequence[bytes]]:
        if d == 2:
            return wrong.share(r).to_bytes(), wrong.verification_vector().commitments
        return secret, vector

    cluster.tamper = tamper
    with pytest.raises(DkgAborted, match=f"verification vector of {degree_plus_one} elements") as raised:
        cluster.generate(2)
    assert raised.value.culprit == 2
    cluster.assert_nothing_left()


def test_confirmation_signatures_over_other_data_are_caught_and_undone() -> None:
    # Consistent partial signatures (every pair combines to the same point) that do not sign the
    # confirmation data: only the verification under the composite key tells.
    cluster = Cluster(3)
    original_commit = cluster.commit

    def commit(participant: dkg.Endpoint, account: str, confirmation_data: bytes) -> dkg.CommitResponse:
        response = original_commit(participant, account, confirmation_data)
        key_share = cluster.stored[(participant.id, account)].key_share
        return dkg.CommitResponse(response.public_key, key_share.sign(confirmation_data + b"!"))

    cluster.commit = commit  # type: ignore[method-assign]
    with pytest.raises(DkgAborted, match="do not combine into a signature under the composite key"):
        cluster.generate(2)
    cluster.assert_nothing_left()


def test_duplicate_contribution_is_idempotent_but_a_different_one_aborts() -> None:
    cluster = Cluster(3)
    params = cluster.parameters(2)
    for node in cluster.nodes.values():
        node.prepare(1, params)
    (to_two, _) = cluster.nodes[1].execute(1, ACCOUNT)
    wire = (to_two.share.to_bytes(), to_two.verification_vector.commitments)
    first = cluster.nodes[2].contribute(1, ACCOUNT, *wire)
    assert cluster.nodes[2].contribute(1, ACCOUNT, *wire) == first
    with pytest.raises(DkgAborted, match="two different contributions") as raised:
        other = th.Polynomial.random(2)
        cluster.nodes[2].contribute(1, ACCOUNT, other.share(2).to_bytes(), other.verification_vector().commitments)
    assert raised.value.culprit == 1
    assert cluster.nodes[2].open_sessions() == ()


# ------------------------------------------------------------------------------ participants down


def test_participant_down_at_execute_aborts_everywhere_and_names_it() -> None:
    cluster = Cluster(3)
    original_prepare = cluster.prepare

    def prepare_then_fall(participant: dkg.Endpoint, parameters: dkg.SessionParameters) -> None:
        original_prepare(participant, parameters)
        if participant.id == 3:
            cluster.down.add(3)

    cluster.prepare = prepare_then_fall  # type: ignore[method-assign]
    with pytest.raises(DkgAborted, match="could not be told to abort") as raised:
        cluster.generate(2)
    assert raised.value.culprit == 3
    assert cluster.results() == {}
    for participant_id in (1, 2):
        assert cluster.nodes[participant_id].open_sessions() == ()
    assert cluster.nodes[3].open_sessions() == (ACCOUNT,)  # unreachable: its session expires
    cluster.clock.now += 71
    assert cluster.nodes[3].open_sessions() == ()


def test_failed_prepare_aborts_only_the_participants_it_prepared() -> None:
    # Another generation of the same account is in progress at participant 2 (started by 3): the
    # new one fails there, and its Abort must not kill that other session.
    cluster = Cluster(3)
    cluster.nodes[2].prepare(3, cluster.parameters(2))
    with pytest.raises(DkgAborted, match="already in progress") as raised:
        cluster.generate(2)
    assert raised.value.culprit == 2
    assert [i for step, i in cluster.calls if step == "abort"] == [1]
    assert cluster.nodes[1].open_sessions() == ()
    assert cluster.nodes[2].open_sessions() == (ACCOUNT,)


# ------------------------------------------------------------------------------ sessions


def test_threshold_not_above_half_is_refused() -> None:
    cluster = Cluster(4)
    for threshold in (0, 1, 2, 5):
        with pytest.raises(InvalidThreshold):
            cluster.parameters(threshold)
    assert cluster.parameters(3).threshold == 3


def test_session_expires_and_leaves_nothing() -> None:
    cluster = Cluster(3, timeout_s=70)
    node = cluster.nodes[2]
    node.prepare(1, cluster.parameters(2))
    cluster.clock.now += 70
    assert node.open_sessions() == (ACCOUNT,)
    cluster.clock.now += 1
    assert node.expire() == (ACCOUNT,)
    with pytest.raises(DkgSessionNotFound):
        node.execute(1, ACCOUNT)
    with pytest.raises(DkgSessionNotFound):
        node.commit(1, ACCOUNT, MESSAGE)
    node.prepare(1, cluster.parameters(2))  # the account is free again


def test_commit_expires_into_a_permanent_account() -> None:
    cluster = Cluster(3)
    cluster.generate(2)
    cluster.clock.now += 71
    for node in cluster.nodes.values():
        with pytest.raises(DkgSessionNotFound):
            node.abort(1, ACCOUNT)  # too late to undo: the account stays
    assert sorted(cluster.results()) == [1, 2, 3]


def test_only_the_initiator_may_undo_a_committed_share() -> None:
    # After a successful generation, another participant must not be able to make the others
    # delete their shares (the commit record lives until the session timeout).
    cluster = Cluster(3)
    cluster.generate(2)
    for node in (cluster.nodes[1], cluster.nodes[3]):
        with pytest.raises(AccessDenied, match="only the initiator"):
            node.abort(2, ACCOUNT)
    assert cluster.nodes[3].abort(1, ACCOUNT) is not None  # the initiator still may
    assert sorted(cluster.results()) == [1, 2, 3]


def test_second_prepare_of_the_same_account_conflicts() -> None:
    cluster = Cluster(3)
    node = cluster.nodes[1]
    node.prepare(1, cluster.parameters(2))
    with pytest.raises(DkgSessionConflict):
        node.prepare(2, cluster.parameters(3))
    node.prepare(1, cluster.parameters(2, "Distributed/other"))
    assert node.open_sessions() == (ACCOUNT, "Distributed/other")


def test_commit_without_every_contribution_aborts_and_names_the_missing() -> None:
    cluster = Cluster(3)
    params = cluster.parameters(2)
    for node in cluster.nodes.values():
        node.prepare(1, params)
    with pytest.raises(DkgAborted, match=r"no contribution from participants \[1, 3\]") as raised:
        cluster.nodes[2].commit(1, ACCOUNT, MESSAGE)
    assert raised.value.culprit is None
    assert cluster.nodes[2].open_sessions() == ()


def test_only_the_initiator_drives_and_only_peers_take_part() -> None:
    cluster = Cluster(3)
    node = cluster.nodes[2]
    node.prepare(1, cluster.parameters(2))
    with pytest.raises(AccessDenied):
        node.execute(3, ACCOUNT)
    with pytest.raises(AccessDenied):
        node.commit(3, ACCOUNT, MESSAGE)
    with pytest.raises(AccessDenied, match="not a configured peer"):
        node.abort(9, ACCOUNT)
    with pytest.raises(AccessDenied):
        node.contribute(2, ACCOUNT, b"\x01" * 32, [])  # from itself
    with pytest.raises(AccessDenied, match="not a configured peer"):
        node.prepare(9, cluster.parameters(2, "other"))
    assert node.open_sessions() == (ACCOUNT,)
    assert node.abort(3, ACCOUNT) is None  # any participant may abort


def test_prepare_refuses_strangers_and_a_session_without_this_signer() -> None:
    cluster = Cluster(3)
    node = cluster.nodes[1]
    stranger = dkg.Endpoint(7, "evil", 1)
    with pytest.raises(AccessDenied, match="participant 7"):
        node.prepare(1, dkg.SessionParameters(ACCOUNT, 2, (cluster.peers[1], cluster.peers[2], stranger)))
    moved = dkg.Endpoint(2, "elsewhere", 8882)
    with pytest.raises(AccessDenied, match="participant 2"):
        node.prepare(1, dkg.SessionParameters(ACCOUNT, 2, (cluster.peers[1], moved, cluster.peers[3])))
    with pytest.raises(MalformedRequest, match="not among the participants"):
        node.prepare(1, dkg.SessionParameters(ACCOUNT, 2, (cluster.peers[2], cluster.peers[3])))
    assert node.open_sessions() == ()


def test_session_parameters_refuse_bad_participants() -> None:
    one, two = dkg.Endpoint(1, "a", 1), dkg.Endpoint(2, "b", 2)
    with pytest.raises(DuplicateParticipantId, match="participant id 1 appears more than once"):
        dkg.SessionParameters(ACCOUNT, 2, (one, one, two))
    with pytest.raises(MalformedRequest):
        dkg.SessionParameters("", 2, (one, two))
    with pytest.raises(InvalidParticipantId):
        dkg.Endpoint(0, "a", 1)
    for bad in [(1, "", 1), (1, "a", 0), (1, "a", 65536)]:
        with pytest.raises(MalformedRequest):
            dkg.Endpoint(*bad)
    assert dkg.SessionParameters(ACCOUNT, 2, (two, one)).ids == (1, 2)


def test_endpoint_address_is_host_and_port() -> None:
    assert dkg.Endpoint(1, "signer-1", 8881).address == "signer-1:8881"
    assert dkg.Endpoint(1, "::1", 8881).address == "[::1]:8881"


def test_select_participants_takes_the_initiator_and_the_lowest_other_ids() -> None:
    peers = {i: dkg.Endpoint(i, f"s{i}", 1000 + i) for i in (2, 4, 5, 9)}
    assert [p.id for p in dkg.select_participants(5, peers, 3)] == [2, 4, 5]
    assert [p.id for p in dkg.select_participants(9, peers, 2)] == [2, 9]
    with pytest.raises(MalformedRequest):
        dkg.select_participants(5, peers, 5)
    with pytest.raises(MalformedRequest):
        dkg.select_participants(1, peers, 2)


# ------------------------------------------------------------------------------ secrets stay secret


def test_no_secret_in_reprs_or_errors() -> None:
    cluster = Cluster(3)
    cluster.tamper = lambda d, r, s, v: (_bump_secret(s), v) if d == 1 else (s, v)
    with pytest.raises(DkgAborted) as raised:
        cluster.generate(2)
    cluster.tamper = _untouched
    cluster.generate(2, "Distributed/2")
    result = cluster.results("Distributed/2")[1]
    hidden = [str(result.key_share.value), result.key_share.to_bytes().hex(), hex(result.key_share.value)[2:]]
    outgoing = cluster.nodes[1]
    outgoing.prepare(1, cluster.parameters(2, "Distributed/3"))
    contributions = outgoing.execute(1, "Distributed/3")
    hidden += [c.share.to_bytes().hex() for c in contributions] + [str(c.share.value) for c in contributions]
    shown = [repr(result), str(result), repr(contributions), str(raised.value), repr(raised.value), repr(outgoing)]
    for text in shown:
        for secret in hidden:
            assert secret not in text


def test_run_execute_drops_the_local_session_when_a_recipient_fails() -> None:
    cluster = Cluster(3)
    params = cluster.parameters(2)
    for node in cluster.nodes.values():
        node.prepare(1, params)

    def unreachable(contribution: dkg.Contribution) -> tuple[bytes, Sequence[bytes]]:
        raise TimeoutError("deadline exceeded")

    with pytest.raises(DkgAborted, match="participant 2 did not take a contribution: TimeoutError") as raised:
        dkg.run_execute(cluster.nodes[1], 1, ACCOUNT, unreachable)
    assert raised.value.culprit == 2
    assert cluster.nodes[1].open_sessions() == ()
