"""PermissionAuthorizer and DevAuthorizer: matching, default deny, deny wins, messages, hooks."""

from __future__ import annotations

import pytest

from signer.api.auth import DEV_ACCOUNTS, DevAuthorizer, PermissionAuthorizer, account_matches, match_client
from signer.api.ratelimit import RateLimiter
from signer.api.tls import require_tls
from signer.config import ClientConfig, RateConfig, load_config, parse_config
from signer.errors import AccessDenied, ConfigError
from signer.keys.dev import DEV_WALLET
from signer.types import ClientIdentity, KeyInfo, Operation, Scheme
from tests.fakes import RecordingAudit, RecordingMonitor
from tests.support import REPO_ROOT

W1_A = KeyInfo(handle="h1", name="w1/a", scheme=Scheme.BLS, public_key=bytes.fromhex("a1" * 48))
W1_B = KeyInfo(handle="h2", name="w1/b", scheme=Scheme.BLS, public_key=bytes.fromhex("b1" * 48))
W2_A = KeyInfo(handle="h3", name="w2/a", scheme=Scheme.BLS, public_key=bytes.fromhex("c1" * 48))
COMET = KeyInfo(handle="h4", name="chain/val", scheme=Scheme.SECP256K1, public_key=bytes.fromhex("02" + "d1" * 32))

VC1 = ClientIdentity("vc-1")


CLIENTS = (
    ClientConfig(
        name="vc-1",
        allow_accounts=("w1/*",),
        deny_accounts=("w1/b",),
        operations=("sign_attestation", "sign_proposal", "sign_generic"),
    ),
    ClientConfig(
        name="vc-2",
        allow_accounts=("*",),
        deny_accounts=("0x" + "C1" * 48,),
        operations=("sign_attestation", "sign_voluntary_exit"),
        deny_operations=("sign_voluntary_exit",),
    ),
    ClientConfig(
        name="comet-1",
        allow_accounts=("0x02" + "d1" * 32,),
        operations=("cometbft_vote", "cometbft_proposal"),
    ),
    ClientConfig(name="ops", operations=("protection_import", "protection_export")),
)


@pytest.fixture
def monitor() -> RecordingMonitor:
    return RecordingMonitor()


@pytest.fixture
def audit() -> RecordingAudit:
    return RecordingAudit()


@pytest.fixture
def authorizer(monitor: RecordingMonitor, audit: RecordingAudit) -> PermissionAuthorizer:
    return PermissionAuthorizer(CLIENTS, audit=audit, monitor=monitor)


ALLOWED = [
    ("vc-1", Operation.SIGN_ATTESTATION, W1_A),
    ("vc-1", Operation.SIGN_PROPOSAL, W1_A),
    ("vc-2", Operation.SIGN_ATTESTATION, W1_A),
    ("vc-2", Operation.SIGN_ATTESTATION, W1_B),
    ("comet-1", Operation.COMETBFT_VOTE, COMET),
    ("ops", Operation.PROTECTION_IMPORT, None),
]


@pytest.mark.parametrize(
    ("client", "operation", "key"),
    ALLOWED,
    ids=[f"{c}-{o.value}-{k.name if k else 'nokey'}" for c, o, k in ALLOWED],
)
def test_allowed(
    authorizer: PermissionAuthorizer,
    monitor: RecordingMonitor,
    client: str,
    operation: Operation,
    key: KeyInfo | None,
) -> None:
    authorizer.authorize(ClientIdentity(client), operation, key)
    assert monitor.denied == []


DENIED = [
    ("vc-1", Operation.SIGN_ATTESTATION, W2_A, "client 'vc-1' may not use account 'w2/a' (not in allow_accounts)"),
    ("vc-1", Operation.SIGN_ATTESTATION, W1_B, "client 'vc-1' may not use account 'w1/b' (deny_accounts has 'w1/b')"),
    ("vc-1", Operation.SIGN_VOLUNTARY_EXIT, W1_A, "client 'vc-1' may not sign_voluntary_exit (not in operations)"),
    (
        "vc-2",
        Operation.SIGN_ATTESTATION,
        W2_A,
        "client 'vc-2' may not use account 'w2/a' (deny_accounts has '0x" + "C1" * 48 + "')",
    ),
    ("vc-2", Operation.SIGN_VOLUNTARY_EXIT, W1_A, "client 'vc-2' may not sign_voluntary_exit (in deny_operations)"),
    ("comet-1", Operation.COMETBFT_VOTE, W1_A, "client 'comet-1' may not use account 'w1/a' (not in allow_accounts)"),
    ("ops", Operation.PROTECTION_IMPORT, W1_A, "client 'ops' may not use account 'w1/a' (not in allow_accounts)"),
    ("ops", Operation.KEY_ADMIN, None, "client 'ops' may not key_admin (not in operations)"),
    (
        "stranger",
        Operation.SIGN_ATTESTATION,
        W1_A,
        "unknown client 'stranger': no [[clients]] entry is named after its certificate CN "
        "(SANs name a client only on a certificate without a CN)",
    ),
    (
        "stranger",
        Operation.PROTECTION_EXPORT,
        None,
        "unknown client 'stranger': no [[clients]] entry is named after its certificate CN "
        "(SANs name a client only on a certificate without a CN)",
    ),
]


@pytest.mark.parametrize(
    "case",
    DENIED,
    ids=[f"{c}-{o.value}-{k.name if k else 'nokey'}" for c, o, k, _ in DENIED],
)
def test_denied_says_why_is_counted_and_audited(
    authorizer: PermissionAuthorizer,
    monitor: RecordingMonitor,
    audit: RecordingAudit,
    case: tuple[str, Operation, KeyInfo | None, str],
) -> None:
    client, operation, key, message = case
    with pytest.raises(AccessDenied) as info:
        authorizer.authorize(ClientIdentity(client), operation, key)
    assert info.value.message == message
    assert monitor.denied == [(client, operation.value)]
    [event] = audit.events
    assert event.client == client
    assert event.operation == operation.value
    assert event.outcome == "denied"
    assert event.reason == message
    assert event.public_key == (key.public_key if key else None)
    assert event.account == (key.name if key else None)


def test_unknown_cn_never_falls_back_to_a_san(authorizer: PermissionAuthorizer) -> None:
    """An unknown CN with SANs that name known clients is an unknown client (issue 13.10)."""
    intruder = ClientIdentity("host-1.example", alt_names=("dns:vc-1", "uri:vc-2", "dns:ops"))
    assert match_client(CLIENTS, intruder) is None
    with pytest.raises(AccessDenied, match=r"unknown client 'host-1.example': no \[\[clients\]\] entry is named"):
        authorizer.authorize(intruder, Operation.SIGN_ATTESTATION, W1_A)


def test_cn_alone_names_the_client() -> None:
    both = ClientIdentity("vc-1", alt_names=("dns:vc-2",))
    assert match_client(CLIENTS, both) is CLIENTS[0]
    opted = (ClientConfig(name="spiffe-vc", sans=("uri:spiffe://example.org/vc",)), *CLIENTS)
    # A CN that is known wins; an unknown CN is not rescued by a SAN its entry opts in to.
    assert match_client(opted, ClientIdentity("vc-2", alt_names=("uri:spiffe://example.org/vc",))) is opted[2]
    assert match_client(opted, ClientIdentity("x", alt_names=("uri:spiffe://example.org/vc",))) is None


def test_a_certificate_without_a_cn_is_matched_only_by_a_san_an_entry_opts_in_to() -> None:
    clients = (
        ClientConfig(name="spiffe-vc", sans=("uri:spiffe://example.org/vc", "dns:VC.example")),
        ClientConfig(name="vc-1", operations=("sign_attestation",), allow_accounts=("*",)),
    )
    no_cn = ClientIdentity("dns:vc.example", alt_names=("dns:vc.example",), has_cn=False)
    assert clients[0].sans == ("uri:spiffe://example.org/vc", "dns:vc.example")  # DNS names compare in lower case
    assert match_client(clients, no_cn) is clients[0]
    uri = ClientIdentity("uri:spiffe://example.org/vc", alt_names=("uri:spiffe://example.org/vc",), has_cn=False)
    assert match_client(clients, uri) is clients[0]
    # The entry's name is not a SAN: a certificate without a CN whose SAN is "vc-1" is unknown.
    plain = ClientIdentity("dns:vc-1", alt_names=("dns:vc-1",), has_cn=False)
    assert match_client(clients, plain) is None
    with pytest.raises(AccessDenied, match=r"no \[\[clients\]\] entry lists any of its certificate SANs"):
        PermissionAuthorizer(clients).authorize(plain, Operation.SIGN_ATTESTATION, W1_A)


def test_sans_pointing_at_two_entries_match_none() -> None:
    clients = (ClientConfig(name="a", sans=("dns:a.example",)), ClientConfig(name="b", sans=("dns:b.example",)))
    both = ClientIdentity("dns:a.example", alt_names=("dns:a.example", "dns:b.example"), has_cn=False)
    assert match_client(clients, both) is None
    with pytest.raises(AccessDenied, match="ambiguous client"):
        PermissionAuthorizer(clients).authorize(both, Operation.SIGN_ATTESTATION, None)


@pytest.mark.parametrize("san", ["vc.example", "ip:10.0.0.1", "dns:", "uri: x", "DNS:vc.example"])
def test_a_san_must_be_typed(san: str) -> None:
    with pytest.raises(ConfigError, match="is not a typed SAN"):
        parse_config({"keys": {"pin": {"env": "X"}}, "clients": [{"name": "a", "sans": [san]}]})


def test_a_san_may_name_one_entry_only() -> None:
    clients = (ClientConfig(name="a", sans=("dns:x.example",)), ClientConfig(name="b", sans=("dns:X.example",)))
    with pytest.raises(ConfigError, match=r"'dns:x\.example' is already in the sans of 'a'"):
        PermissionAuthorizer(clients)


def test_no_clients_configured_denies_everyone() -> None:
    authorizer = PermissionAuthorizer(())
    with pytest.raises(AccessDenied, match="unknown client 'vc-1'"):
        authorizer.authorize(VC1, Operation.SIGN_ATTESTATION, W1_A)


def test_empty_operations_allow_nothing() -> None:
    authorizer = PermissionAuthorizer((ClientConfig(name="vc-1", allow_accounts=("*",)),))
    with pytest.raises(AccessDenied, match=r"may not sign_attestation \(not in operations\)"):
        authorizer.authorize(VC1, Operation.SIGN_ATTESTATION, W1_A)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("*", W2_A, True),
        ("w1/*", W1_A, True),
        ("w1/*", W2_A, False),
        ("w1/a", W1_A, True),
        ("w1/a", W1_B, False),
        ("W1/a", W1_A, False),
        ("w?/a", W2_A, True),
        ("0x" + "a1" * 48, W1_A, True),
        ("0X" + "A1" * 48, W1_A, True),
        ("0x" + "a1" * 48, W1_B, False),
        ("0x02" + "d1" * 32, COMET, True),
    ],
    ids=[
        "star",
        "wallet-glob",
        "wallet-glob-miss",
        "exact",
        "exact-miss",
        "case-sensitive-name",
        "question-mark",
        "pubkey",
        "pubkey-upper",
        "pubkey-miss",
        "secp256k1-pubkey",
    ],
)
def test_account_matches(pattern: str, key: KeyInfo, expected: bool) -> None:
    assert account_matches(pattern, key) is expected


@pytest.mark.parametrize(
    ("clients", "message"),
    [
        ((ClientConfig(name="a"), ClientConfig(name="a")), "'a' is listed twice"),
        # model_construct: entries built in code, past the config model (which refuses these itself).
        ((ClientConfig.model_construct(name="a", allow_accounts=("0x1234",)),), "is not a 0x public key"),
        ((ClientConfig.model_construct(name="a", deny_accounts=("0x" + "zz" * 48,)),), "is not a 0x public key"),
        ((ClientConfig.model_construct(name="a", allow_accounts=(" ",)),), "empty pattern"),
    ],
    ids=["duplicate-client", "short-pubkey", "non-hex-pubkey", "blank-pattern"],
)
def test_bad_permission_config_is_refused(clients: tuple[ClientConfig, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PermissionAuthorizer(clients)


def test_built_from_parsed_config() -> None:
    config = parse_config(
        {
            "keys": {"pin": {"env": "X"}},
            "clients": [
                {"name": "vc-1", "allow_accounts": ["w1/*"], "operations": ["sign_attestation"]},
            ],
        }
    )
    authorizer = PermissionAuthorizer(config.clients)
    authorizer.authorize(VC1, Operation.SIGN_ATTESTATION, W1_A)
    with pytest.raises(AccessDenied):
        authorizer.authorize(VC1, Operation.SIGN_PROPOSAL, W1_A)


def test_dev_authorizer_allows_any_client_on_dev_keys_only(monitor: RecordingMonitor, audit: RecordingAudit) -> None:
    assert (f"{DEV_WALLET}/*",) == DEV_ACCOUNTS
    dev_key = KeyInfo(handle="d", name=f"{DEV_WALLET}/0", scheme=Scheme.BLS, public_key=b"\x01" * 48)
    authorizer = DevAuthorizer(monitor=monitor, audit=audit)
    for operation in Operation:
        authorizer.authorize(ClientIdentity("anyone"), operation, dev_key)
        authorizer.authorize(ClientIdentity("anyone"), operation, None)
    with pytest.raises(AccessDenied, match="--dev: client 'anyone' may use only the dev keys, not account 'w1/a'"):
        authorizer.authorize(ClientIdentity("anyone"), Operation.SIGN_ATTESTATION, W1_A)
    assert monitor.denied == [("anyone", "sign_attestation")]
    assert [e.account for e in audit.events] == ["w1/a"]


def test_the_example_config_loads_and_its_permissions_work() -> None:
    config = load_config(REPO_ROOT / "examples" / "signer.toml")
    host = config.server.grpc_listen.rpartition(":")[0]
    assert require_tls(host, config.server.tls, config.server.allow_insecure_plaintext) is True
    authorizer = PermissionAuthorizer(config.clients)
    limiter = RateLimiter(config.limits, config.clients)
    mainnet_a = KeyInfo(handle="x", name="mainnet-a/0007", scheme=Scheme.BLS, public_key=b"\x01" * 48)
    retired = KeyInfo(handle="y", name="mainnet-a/retired-3", scheme=Scheme.BLS, public_key=b"\x02" * 48)
    authorizer.authorize(ClientIdentity("vc-1"), Operation.SIGN_ATTESTATION, mainnet_a)
    with pytest.raises(AccessDenied, match="deny_accounts"):
        authorizer.authorize(ClientIdentity("vc-1"), Operation.SIGN_ATTESTATION, retired)
    with pytest.raises(AccessDenied, match="in deny_operations"):
        authorizer.authorize(ClientIdentity("vc-1"), Operation.SIGN_VOLUNTARY_EXIT, mainnet_a)
    authorizer.authorize(ClientIdentity("signer-ops"), Operation.SIGN_VOLUNTARY_EXIT, mainnet_a)
    assert limiter.rate_for(ClientIdentity("vc-1"))[1] == RateConfig(per_second=2000, burst=4000)
    assert limiter.rate_for(ClientIdentity("vc-2"))[1] == config.limits.default_rate
