"""End to end, the security surface: mTLS, permissions, rate limits, audit log, plaintext policy, SIGHUP.

One ``signer serve --config`` process (module scope) with ``[server.tls]`` from a throwaway PKI
(tests.certs), ``[[clients]]`` of different permissions, an audit log file, and an emulated module
whose keys were made first with ``signer keys dev`` (dev/0..3, known secrets) and
``signer keys generate`` (other/0..1). Clients are real gRPC mTLS channels, one per certificate.

Clients of the shared server:

* ``vc-att``: attestations only, ``dev/*`` except ``dev/3``;
* ``vc-full``: attestations, proposals and generic signing on ``dev/*`` and ``other/*``, voluntary
  exits explicitly denied;
* ``vc-slow``: like vc-att plus generic signing, at 0.5 requests/s with a burst of 3;
* ``ops``: voluntary exits and deposits only, every key;
* ``vc-nobody``: a certificate of the trusted CA whose name no ``[[clients]]`` entry has;
* ``comet-1``: CometBFT votes and proposals with the key of chain ``sec-chain``;
* ``vc-spiffe``: generic signing on ``dev/*`` for a certificate without a CN whose URI SAN the
  entry opts in to (``sans``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blspy
import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from signer.api._proto.tendermint.privval import types_pb2 as privval_types_pb2
from signer.api._proto.tendermint.privval.service_pb2_grpc import PrivValidatorAPIStub
from signer.api._proto.v1 import lister_pb2, lister_pb2_grpc, responsestate_pb2, signer_pb2, signer_pb2_grpc
from signer.keys.dev import DEV_PIN, dev_bls_secret
from tests.certs import CertPair, Pki, make_pki
from tests.e2e.harness import (
    DOMAIN_RANDAO,
    SignerProcess,
    init_protection,
    ref_domain,
    ref_signing_root,
)
from tests.e2e.test_eth2_e2e import att, proposal, root
from tests.support import trailers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a server, keys made by the CLI (scrypt): ~10-17 s in all

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
DOMAIN_VOLUNTARY_EXIT = bytes.fromhex("04000000")
DOMAIN_DEPOSIT = bytes.fromhex("03000000")
RANDAO = ref_domain(DOMAIN_RANDAO)
VOLUNTARY_EXIT = ref_domain(DOMAIN_VOLUNTARY_EXIT)
DEPOSIT = ref_domain(DOMAIN_DEPOSIT, genesis_validators_root=b"\x00" * 32)  # genesis version, zero root
CLIENTS = ("vc-att", "vc-full", "vc-slow", "ops", "vc-nobody", "comet-1")
DEV_KEYS = 4
SLOW_BURST = 3
CALL_TIMEOUT_S = 30.0
SPIFFE_ID = "spiffe://example.org/vc-spiffe"
SPIFFE_SAN = f"uri:{SPIFFE_ID}"


def signer_cli(*args: str | Path, env: dict[str, str] | None = None) -> str:
    """``python -m signer ARGS``; asserts exit 0 and returns stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "signer", *map(str, args)],
        env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"signer {args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def make_keys(data_dir: Path) -> tuple[Path, dict[str, bytes]]:
    """dev/0..3 (``signer keys dev``) and other/0..1 (``signer keys generate``) in one emulated module.

    Returns the PIN file and ``account -> public key`` as ``signer keys list`` prints them.
    """
    signer_cli("keys", "dev", "--data-dir", data_dir, "--count", str(DEV_KEYS))
    pin_file = data_dir.parent / f"{data_dir.name}.pin"
    pin_file.write_text(DEV_PIN + "\n", encoding="utf-8")
    pin_file.chmod(0o600)
    module = ("--data-dir", data_dir, "--pin-file", pin_file)
    signer_cli("keys", "generate", *module, "--count", "2", "--wallet", "other")
    keys: dict[str, bytes] = {}
    for line in signer_cli("keys", "list", *module).splitlines():
        public_key, name, _scheme = line.split()
        keys[name] = bytes.fromhex(public_key.removeprefix("0x"))
    return pin_file, keys


def keys_toml(data_dir: Path, pin_file: Path) -> str:
    return f"""
[keys]
module = "emulated"
data_dir = "{data_dir}"
pin = {{ file = "{pin_file}" }}
"""


def security_config(pki: Pki, data_dir: Path, pin_file: Path, audit: Path) -> str:
    return f"""
[server]
shutdown_grace_s = 2.0

[server.tls]
cert_file = "{pki.server.cert}"
key_file = "{pki.server.key}"
client_ca_file = "{pki.ca.cert}"
reload_interval_s = 3600.0   # only SIGHUP reloads within a test run
{keys_toml(data_dir, pin_file)}
[[clients]]
name = "vc-att"
allow_accounts = ["dev/*"]
deny_accounts = ["dev/3"]
operations = ["sign_attestation"]

[[clients]]
name = "vc-full"
allow_accounts = ["dev/*", "other/*"]
operations = ["sign_attestation", "sign_proposal", "sign_generic"]
deny_operations = ["sign_voluntary_exit"]

[[clients]]
name = "vc-slow"
allow_accounts = ["dev/*"]
operations = ["sign_attestation", "sign_generic"]
rate = {{ per_second = 0.5, burst = {SLOW_BURST} }}

[[clients]]
name = "ops"
allow_accounts = ["*"]
operations = ["sign_voluntary_exit", "sign_deposit"]

[[clients]]
name = "comet-1"
allow_accounts = ["dev/cometbft-secp256k1"]
operations = ["cometbft_vote", "cometbft_proposal"]

[[cometbft.chains]]
chain_id = "sec-chain"
account = "dev/cometbft-secp256k1"

[[clients]]
name = "vc-spiffe"
sans = ["{SPIFFE_SAN}"]
allow_accounts = ["dev/*"]
operations = ["sign_generic"]

[audit]
path = "{audit}"
"""


@dataclass
class SecureSigner:
    proc: SignerProcess
    pki: Pki
    keys: dict[str, bytes]
    audit: Path
    pin_file: Path
    root_dir: Path

    def channel(self, client: str) -> grpc.Channel:
        return self.proc.channel(credentials(self.pki.ca, self.pki.clients[client]))

    def signer(self, client: str) -> signer_pb2_grpc.SignerStub:
        return signer_pb2_grpc.SignerStub(self.channel(client))

    def audit_records(self) -> list[dict[str, object]]:
        """The decision lines (the hash chain's own records have a ``record`` field)."""
        lines = self.audit.read_text(encoding="utf-8").splitlines()
        return [r for r in (json.loads(line) for line in lines) if "record" not in r]


def credentials(ca: CertPair, client: CertPair | None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca.cert_pem)
    return grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem, private_key=client.key_pem, certificate_chain=client.cert_pem
    )


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureSigner]:
    base = tmp_path_factory.mktemp("security-e2e")
    pki = make_pki(base, clients=CLIENTS)
    data_dir = base / "data"
    pin_file, keys = make_keys(data_dir)
    audit = base / "audit.jsonl"
    config = base / "signer.toml"
    config.write_text(security_config(pki, data_dir, pin_file, audit), encoding="utf-8")
    init_protection(config)  # keys made for this test: never signed
    proc = SignerProcess.from_config(config).start()
    try:
        yield SecureSigner(proc, pki, keys, audit, pin_file, base)
    finally:
        assert proc.terminate() == 0, proc.logs


def blspy_verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    return bool(
        blspy.PopSchemeMPL.verify(
            blspy.G1Element.from_bytes(public_key), message, blspy.G2Element.from_bytes(signature)
        )
    )


def generic(account: str, data: bytes, domain: bytes) -> signer_pb2.SignRequest:
    return signer_pb2.SignRequest(account=account, data=data, domain=domain)


# --- the handshake ------------------------------------------------------------------------------


def _handshake_error(
    address: tuple[str, int], ca: CertPair, client: CertPair | None
) -> tuple[ssl.SSLError | OSError | None, x509.Certificate | None]:
    """A raw TLS 1.3 handshake plus a first read (the server's verdict on a client certificate
    arrives after the client's Finished). Returns (error, server certificate)."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.set_alpn_protocols(["h2"])
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    with socket.create_connection(address, timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                der = tls.getpeercert(binary_form=True)
                server_cert = x509.load_der_x509_certificate(der) if der else None
                # HTTP/2 preface: a server that accepted us answers with its SETTINGS frame.
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                data = tls.recv(9)
                if not data:
                    return ConnectionResetError("closed without an answer"), server_cert
                return None, server_cert
        except (ssl.SSLError, OSError) as exc:
            return exc, None


def test_known_client_completes_the_handshake(secure: SecureSigner) -> None:
    error, server_cert = _handshake_error(("127.0.0.1", secure.proc.grpc_port), secure.pki.ca,
                                          secure.pki.clients["vc-full"])  # fmt: skip
    assert error is None
    assert server_cert is not None


def test_no_client_certificate_is_rejected_at_the_handshake(secure: SecureSigner) -> None:
    error, _ = _handshake_error(("127.0.0.1", secure.proc.grpc_port), secure.pki.ca, None)
    assert error is not None
    assert isinstance(error, ssl.SSLError | ConnectionResetError), repr(error)
    # gRPC: the call never reaches the server's handlers.
    channel = grpc.secure_channel(secure.proc.address, credentials(secure.pki.ca, None))
    try:
        with pytest.raises(grpc.RpcError) as info:
            signer_pb2_grpc.SignerStub(channel).Sign(generic("dev/0", root("x"), RANDAO), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()


@pytest.mark.parametrize("who", ["stranger", "impostor"])
def test_client_of_an_unknown_ca_is_rejected_at_the_handshake(secure: SecureSigner, who: str) -> None:
    """``stranger`` is a foreign CA's client; ``impostor`` carries the CN of a known client (vc-att)."""
    client: CertPair = getattr(secure.pki, who)
    error, _ = _handshake_error(("127.0.0.1", secure.proc.grpc_port), secure.pki.ca, client)
    assert error is not None
    assert isinstance(error, ssl.SSLError | ConnectionResetError), repr(error)
    before = secure.audit.read_text(encoding="utf-8") if secure.audit.exists() else ""
    channel = grpc.secure_channel(secure.proc.address, credentials(secure.pki.ca, client))
    try:
        with pytest.raises(grpc.RpcError) as info:
            signer_pb2_grpc.SignerStub(channel).SignBeaconAttestation(att(0, 1, 2).request(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()
    after = secure.audit.read_text(encoding="utf-8") if secure.audit.exists() else ""
    assert after == before  # nothing reached the service: no decision was made


# --- permissions ------------------------------------------------------------------------------


def test_client_is_refused_a_key_it_may_not_use(secure: SecureSigner) -> None:
    stub = secure.signer("vc-att")
    allowed = att(0, 1, 2, block="perm")
    ok = stub.SignBeaconAttestation(allowed.request(), timeout=CALL_TIMEOUT_S)
    assert ok.state == SUCCEEDED
    assert blspy_verifies(secure.keys["dev/0"], allowed.signing_root(), bytes(ok.signature))
    for account in ("other/0", "dev/3"):  # not allowed; explicitly denied
        refused = stub.SignBeaconAttestation(att(0, 1, 2, block="perm", account=account).request(),
                                             timeout=CALL_TIMEOUT_S)  # fmt: skip
        assert refused.state == DENIED, account
        assert not refused.signature
    # The same key through a client that may use it signs (the refusal was the permission).
    full = secure.signer("vc-full").SignBeaconAttestation(
        att(0, 1, 2, block="perm", account="other/0").request(), timeout=CALL_TIMEOUT_S
    )
    assert full.state == SUCCEEDED
    # The lister shows each client only its own keys.
    lister = lister_pb2_grpc.ListerStub(secure.channel("vc-att"))
    listed = lister.ListAccounts(lister_pb2.ListAccountsRequest(), timeout=CALL_TIMEOUT_S)
    assert sorted(a.name for a in listed.Accounts) == ["dev/0", "dev/1", "dev/2"]


def test_client_is_refused_an_operation_it_may_not_do(secure: SecureSigner) -> None:
    # vc-att may attest with dev/1, but not propose with it.
    request, _ = proposal(1, 64, "op-test")
    refused = secure.signer("vc-att").SignBeaconProposal(request, timeout=CALL_TIMEOUT_S)
    assert refused.state == DENIED
    assert not refused.signature
    ok = secure.signer("vc-full").SignBeaconProposal(request, timeout=CALL_TIMEOUT_S)
    assert ok.state == SUCCEEDED

    # vc-full may sign generic messages, but voluntary exits are denied to it; ops may sign them.
    data = root("exit of dev/2")
    full = secure.signer("vc-full")
    randao = full.Sign(generic("dev/2", data, RANDAO), timeout=CALL_TIMEOUT_S)
    assert randao.state == SUCCEEDED
    exit_refused = full.Sign(generic("dev/2", data, VOLUNTARY_EXIT), timeout=CALL_TIMEOUT_S)
    assert exit_refused.state == DENIED
    assert not exit_refused.signature
    exit_ok = secure.signer("ops").Sign(generic("dev/2", data, VOLUNTARY_EXIT), timeout=CALL_TIMEOUT_S)
    assert exit_ok.state == SUCCEEDED
    assert blspy_verifies(secure.keys["dev/2"], ref_signing_root(data, VOLUNTARY_EXIT), bytes(exit_ok.signature))
    # ... and ops may do nothing else.
    assert secure.signer("ops").Sign(generic("dev/2", data, RANDAO), timeout=CALL_TIMEOUT_S).state == DENIED


def test_sign_generic_does_not_cover_deposits(secure: SecureSigner) -> None:
    # A deposit names the withdrawal credentials: vc-full (sign_generic) is refused one for any key;
    # ops, granted sign_deposit, signs it.
    data = root("deposit message of dev/1")
    refused = secure.signer("vc-full").Sign(generic("dev/1", data, DEPOSIT), timeout=CALL_TIMEOUT_S)
    assert refused.state == DENIED
    assert not refused.signature
    signed = secure.signer("ops").Sign(generic("dev/1", data, DEPOSIT), timeout=CALL_TIMEOUT_S)
    assert signed.state == SUCCEEDED
    assert blspy_verifies(secure.keys["dev/1"], ref_signing_root(data, DEPOSIT), bytes(signed.signature))


def test_unknown_client_of_the_trusted_ca_is_denied_everything(secure: SecureSigner) -> None:
    stub = secure.signer("vc-nobody")
    assert stub.SignBeaconAttestation(att(1, 1, 2, block="nobody").request(), timeout=CALL_TIMEOUT_S).state == DENIED
    assert stub.Sign(generic("dev/1", root("n"), RANDAO), timeout=CALL_TIMEOUT_S).state == DENIED
    listed = lister_pb2_grpc.ListerStub(secure.channel("vc-nobody")).ListAccounts(
        lister_pb2.ListAccountsRequest(), timeout=CALL_TIMEOUT_S
    )
    assert list(listed.Accounts) == []
    assert listed.state == DENIED
    # Authorized before its paths are read: even a path that is no pattern gets "may not list".
    listed = lister_pb2_grpc.ListerStub(secure.channel("vc-nobody")).ListAccounts(
        lister_pb2.ListAccountsRequest(paths=["dev/(a)\\1"]), timeout=CALL_TIMEOUT_S
    )
    assert listed.state == DENIED

    def refusals() -> list[dict[str, object]]:
        return [r for r in secure.audit_records() if "may not list accounts" in str(r.get("reason"))]

    _wait_for(lambda: len(refusals()) == 2)
    assert [(r["client"], r["method"], r["outcome"]) for r in refusals()] == [
        ("vc-nobody", "ListAccounts", "denied")
    ] * 2


def test_cometbft_get_pub_key_needs_a_permission_for_the_chain_key(secure: SecureSigner) -> None:
    request = privval_types_pb2.PubKeyRequest(chain_id="sec-chain")
    answer = PrivValidatorAPIStub(secure.channel("comet-1")).GetPubKey(request, timeout=CALL_TIMEOUT_S)
    assert not answer.HasField("error"), answer.error
    assert bytes(answer.pub_key.secp256k1) == secure.keys["dev/cometbft-secp256k1"]
    for client in ("vc-full", "ops", "vc-nobody"):  # may sign Ethereum messages, or nothing: no chain key
        refused = PrivValidatorAPIStub(secure.channel(client)).GetPubKey(request, timeout=CALL_TIMEOUT_S)
        assert refused.HasField("error"), client
        assert refused.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0], refused.error
        assert not refused.pub_key.secp256k1 and not refused.pub_key.ed25519


# --- rate limits --------------------------------------------------------------------------------


@dataclass
class SlowResult:
    ok: int = 0
    limited: int = 0
    retry_after_ms: list[int] | None = None
    other: list[str] | None = None


def _hammer(stub: signer_pb2_grpc.SignerStub, until: float, out: SlowResult) -> None:
    out.retry_after_ms, out.other = [], []
    n = 0
    while time.monotonic() < until:
        n += 1
        try:
            resp = stub.Sign(generic("dev/0", root(f"slow{n}"), RANDAO), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                out.limited += 1
                trailing = trailers(exc)
                out.retry_after_ms.append(int(trailing.get("retry-after-ms", "-1")))
            else:
                out.other.append(f"{exc.code()}: {exc.details()}")
            continue
        if resp.state == SUCCEEDED:
            out.ok += 1
        else:
            out.other.append(f"state {resp.state}")


def test_client_over_its_rate_is_limited_while_another_is_served(secure: SecureSigner) -> None:
    slow = secure.signer("vc-slow")
    full = secure.signer("vc-full")
    result = SlowResult()
    window_s = 2.0
    thread = threading.Thread(target=_hammer, args=(slow, time.monotonic() + window_s, result))
    thread.start()
    served: list[int] = []
    try:
        deadline = time.monotonic() + window_s
        n = 0
        while time.monotonic() < deadline:
            n += 1
            resp = full.Sign(generic("dev/1", root(f"fast{n}"), RANDAO), timeout=CALL_TIMEOUT_S)
            served.append(resp.state)
    finally:
        thread.join(timeout=60)
    assert result.other == [], result.other
    # burst 3 plus at most 0.5/s x 2 s (+1 for timing): everything else was refused.
    assert 1 <= result.ok <= SLOW_BURST + 2, result
    assert result.limited >= 5, result
    assert result.retry_after_ms and all(0 < ms <= 2000 for ms in result.retry_after_ms), result.retry_after_ms
    # The other client, at the same time, was never limited.
    assert len(served) >= 10
    assert set(served) == {SUCCEEDED}


# --- the audit log ------------------------------------------------------------------------------


def _wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def test_audit_log_has_a_json_line_per_decision_and_no_secret(secure: SecureSigner) -> None:
    full = secure.signer("vc-full")
    # A signature, a slashing refusal, a permission refusal, a rate limit: one decision each.
    first = att(2, 3, 4, block="audit-a")
    assert full.SignBeaconAttestation(first.request(), timeout=CALL_TIMEOUT_S).state == SUCCEEDED
    double = att(2, 3, 4, block="audit-b")
    assert full.SignBeaconAttestation(double.request(), timeout=CALL_TIMEOUT_S).state == DENIED
    refused = secure.signer("vc-att").SignBeaconAttestation(
        att(0, 3, 4, block="audit", account="other/1").request(), timeout=CALL_TIMEOUT_S
    )
    assert refused.state == DENIED
    slow = secure.signer("vc-slow")
    limited = False
    for n in range(SLOW_BURST + 5):
        try:
            slow.Sign(generic("dev/0", root(f"audit-slow{n}"), RANDAO), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            limited = True
            break
    assert limited

    def has(**fields: object) -> bool:
        return any(all(r.get(k) == v for k, v in fields.items()) for r in secure.audit_records())

    _wait_for(lambda: has(client="vc-slow", outcome="rate_limited"))
    records = secure.audit_records()
    for record in records:
        assert {"ts", "client", "method", "outcome"} <= set(record), record
        assert record["client"] in CLIENTS, record
    double_vote = [r for r in records if r.get("offence") == "double_vote"]
    assert any(
        r["client"] == "vc-full" and r["outcome"] == "denied" and r.get("account") == "dev/2"
        and r.get("source_epoch") == 3 and r.get("target_epoch") == 4
        and r.get("key") == "0x" + secure.keys["dev/2"].hex()
        for r in double_vote
    ), double_vote  # fmt: skip
    assert has(client="vc-full", outcome="succeeded", method="SignBeaconAttestation", account="dev/2",
               target_epoch=4)  # fmt: skip
    assert has(client="vc-att", outcome="denied", account="other/1", method="SignBeaconAttestation")
    assert has(client="vc-slow", outcome="rate_limited", method="Sign")
    # The refusals say why.
    assert all(r.get("reason") for r in records if r["outcome"] != "succeeded")

    # No secret: not the module PIN, not a key's secret, not the server's TLS key.
    text = secure.audit.read_text(encoding="utf-8") + secure.proc.logs + secure.proc.stdout
    secrets = [DEV_PIN, secure.pki.server.key_pem.decode().splitlines()[1]]
    for index in range(DEV_KEYS):
        key_secret = dev_bls_secret(index)
        secrets += [key_secret.hex(), "0x" + key_secret.hex(), str(int.from_bytes(key_secret, "big"))]
    for secret in secrets:
        assert secret not in text


# --- plaintext policy ---------------------------------------------------------------------------


def _plaintext_config(secure: SecureSigner, name: str, allow: bool) -> Path:
    # A data dir of its own: the module fixture's server holds "data" (one signer per data dir).
    data_dir = secure.root_dir / f"{name}-data"
    shutil.copytree(secure.root_dir / "data", data_dir, ignore=shutil.ignore_patterns("signer.lock", "protection.*"))
    config = secure.root_dir / f"{name}.toml"
    config.write_text(
        f"""
[server]
grpc_listen = "0.0.0.0:0"
metrics_listen = "127.0.0.1:0"
allow_insecure_plaintext = {"true" if allow else "false"}
{keys_toml(data_dir, secure.pin_file)}
[protection]
sqlite_path = "{secure.root_dir / f"{name}.sqlite"}"
""",
        encoding="utf-8",
    )
    return config


def test_plaintext_off_loopback_refuses_to_start(secure: SecureSigner) -> None:
    config = _plaintext_config(secure, "plaintext-refused", allow=False)
    done = subprocess.run(
        [sys.executable, "-m", "signer", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "0.0.0.0" in done.stderr
    assert "not a loopback address" in done.stderr
    assert "[server.tls] is required" in done.stderr
    assert "allow_insecure_plaintext" in done.stderr
    assert "Traceback" not in done.stderr


def test_plaintext_off_loopback_starts_when_explicitly_allowed(secure: SecureSigner) -> None:
    """The counterpart: the refusal above is the policy, not a broken config."""
    config = _plaintext_config(secure, "plaintext-allowed", allow=True)
    init_protection(config)
    proc = SignerProcess.from_config(config, extra_args=["--grpc-listen", "0.0.0.0:0"]).start()
    try:
        warning = proc.wait_for_log(lambda r: "INSECURE" in str(r.get("msg", "")))
        assert warning.get("level", "WARNING").upper() in ("WARNING", "WARN")
        resp = signer_pb2_grpc.SignerStub(proc.channel()).Sign(generic("dev/0", root("p"), RANDAO), timeout=30)
        assert resp.state == DENIED  # no [[clients]]: even 'local' may do nothing (default deny)
    finally:
        assert proc.terminate() == 0, proc.logs


# --- certificate reload -------------------------------------------------------------------------


def _served_cn(secure: SecureSigner) -> str:
    error, server_cert = _handshake_error(("127.0.0.1", secure.proc.grpc_port), secure.pki.ca,
                                          secure.pki.clients["vc-full"])  # fmt: skip
    assert error is None and server_cert is not None, error
    return str(server_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_sighup_reloads_the_server_certificate_without_restart(secure: SecureSigner) -> None:
    pid = secure.proc.pid
    assert _served_cn(secure) == "signer"
    old_channel = secure.channel("vc-full")
    assert signer_pb2_grpc.SignerStub(old_channel).Sign(generic("dev/1", root("before"), RANDAO),
                                                        timeout=CALL_TIMEOUT_S).state == SUCCEEDED  # fmt: skip
    new = secure.pki.issue_server("server-next", cn="signer-2")
    # Replace both files atomically (as a secret mount or cert-manager does).
    for source, target in ((new.key, secure.pki.server.key), (new.cert, secure.pki.server.cert)):
        staged = target.with_suffix(".staged")
        staged.write_bytes(source.read_bytes())
        os.replace(staged, target)
    assert _served_cn(secure) == "signer"  # reload_interval_s is an hour: nothing changes by itself
    os.kill(pid, signal.SIGHUP)
    secure.proc.wait_for_log(lambda r: "re-read" in str(r.get("msg", "")))
    assert _served_cn(secure) == "signer-2"
    assert secure.proc.pid == pid and secure.proc.running
    stub = secure.signer("vc-full")  # a new connection, handshaken with the new certificate
    assert stub.Sign(generic("dev/1", root("after"), RANDAO), timeout=CALL_TIMEOUT_S).state == SUCCEEDED


# --- which [[clients]] entry a certificate stands for ----------------------------------------------
# (At the end of the file: these certificates' names are not in CLIENTS, which the audit test checks.)


def _channel_of(secure: SecureSigner, client: CertPair) -> grpc.Channel:
    return secure.proc.channel(credentials(secure.pki.ca, client))


def test_unknown_cn_with_a_known_client_as_san_gets_no_rights(secure: SecureSigner) -> None:
    """A certificate of the trusted CA with an unknown CN and SANs that name known clients (internal
    CAs often let any workload request any DNS SAN) is an unknown client: it gets nothing."""
    intruder = secure.pki.issue_client("intruder", sans=("vc-full", "ops"))
    channel = _channel_of(secure, intruder)
    stub = signer_pb2_grpc.SignerStub(channel)
    assert stub.Sign(generic("dev/1", root("intruder"), RANDAO), timeout=CALL_TIMEOUT_S).state == DENIED
    exit_request = generic("dev/1", root("intruder exit"), VOLUNTARY_EXIT)
    assert stub.Sign(exit_request, timeout=CALL_TIMEOUT_S).state == DENIED
    listed = lister_pb2_grpc.ListerStub(channel).ListAccounts(lister_pb2.ListAccountsRequest(), timeout=CALL_TIMEOUT_S)
    assert list(listed.Accounts) == []
    _wait_for(lambda: any(r.get("client") == "intruder" for r in secure.audit_records()))
    refusals = [r for r in secure.audit_records() if r.get("client") == "intruder"]
    assert refusals and all(r["outcome"] == "denied" for r in refusals), refusals
    assert any("unknown client 'intruder'" in str(r.get("reason")) for r in refusals), refusals


def test_a_san_names_a_client_only_without_a_cn_and_only_where_the_entry_opts_in(secure: SecureSigner) -> None:
    request = generic("dev/1", root("spiffe"), RANDAO)
    workload = secure.pki.issue_client("spiffe", uris=(SPIFFE_ID,), with_cn=False)
    ok = signer_pb2_grpc.SignerStub(_channel_of(secure, workload)).Sign(request, timeout=CALL_TIMEOUT_S)
    assert ok.state == SUCCEEDED
    assert blspy_verifies(secure.keys["dev/1"], ref_signing_root(root("spiffe"), RANDAO), bytes(ok.signature))
    # The same SAN on a certificate with an (unknown) CN names nobody.
    with_cn = secure.pki.issue_client("workload-7", uris=(SPIFFE_ID,))
    refused = signer_pb2_grpc.SignerStub(_channel_of(secure, with_cn)).Sign(request, timeout=CALL_TIMEOUT_S)
    assert refused.state == DENIED
    # An entry's name is not a SAN: no CN and a DNS SAN "vc-full" is an unknown client.
    posing = secure.pki.issue_client("posing", sans=("vc-full",), with_cn=False)
    refused = signer_pb2_grpc.SignerStub(_channel_of(secure, posing)).Sign(request, timeout=CALL_TIMEOUT_S)
    assert refused.state == DENIED
