"""End to end, the Keymanager API (issue 15): ``/eth/v1/keystores`` on a real ``signer serve`` process.

* ``serve --dev`` (emulated module, plaintext loopback: the caller is ``local``, no second factor):
  the bearer token file is created 0600 on first start, calls without it are 401/403; import with
  and without ``slashing_protection`` (duplicate, wrong password -> a per-key error; history only for
  the keys imported, and it applies to the next signature), list, delete -> history returned and
  retained, delete-then-sign refused (the Web3Signer sign route: 404 unknown key), repeated delete
  -> not_active, a key never seen -> not_found.
* The same import on a SoftHSM2 token (``keys.module = "pkcs11"``): the key is sealed by the token,
  no file holds it in plaintext, it signs, and after a restart it is still there and signs.
* A config-file signer whose client ``local`` has operators, with the default ``[admin]`` (second
  factor on, deletes wait for approval): no code is refused naming the problem (``otp_missing``), a
  delete answers 202 with the pending operation, and a second operator's approval over HTTP runs it.
"""

from __future__ import annotations

import json
import secrets
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from signer.crypto import bls
from signer.eth2.networks import MAINNET
from signer.keys import eip2335
from signer.totp import STEP_S, code_at, new_secret
from tests.e2e.harness import (
    DOMAIN_BEACON_ATTESTER,
    SignerProcess,
    init_protection,
    ref_attestation_data_root,
    ref_domain,
    ref_signing_root,
)
from tests.e2e.test_security_e2e import keys_toml, make_keys

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "keystore-password"  # noqa: S105 - test keystores' password
GVR = "0x" + MAINNET.genesis_validators_root.hex()
TOKEN_FILE = "keymanager-token"  # noqa: S105 - a file name


# --- a small HTTP client ------------------------------------------------------------------------


def http(
    method: str, url: str, body: Any = None, *, token: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback URL
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:  # its response is closed here, not by the garbage collector (a ResourceWarning)
            return exc.code, json.loads(exc.read() or b"null")


@dataclass
class Keymanager:
    proc: SignerProcess
    token: str

    @property
    def url(self) -> str:
        return f"{self.proc.rest_url}/eth/v1/keystores"

    def list_keys(self, **kw: Any) -> tuple[int, Any]:
        return http("GET", self.url, token=self.token, **kw)

    def import_(
        self, keystores: list[str], passwords: list[str], history: str | None = None, **kw: Any
    ) -> tuple[int, Any]:
        body: dict[str, Any] = {"keystores": keystores, "passwords": passwords}
        if history is not None:
            body["slashing_protection"] = history
        return http("POST", self.url, body, token=self.token, **kw)

    def delete(self, *public_keys: bytes, **kw: Any) -> tuple[int, Any]:
        return http("DELETE", self.url, {"pubkeys": ["0x" + pk.hex() for pk in public_keys]}, token=self.token, **kw)

    def listed(self) -> list[str]:
        return self.listed_with({})

    def listed_with(self, headers: dict[str, str]) -> list[str]:
        code, answer = self.list_keys(headers=headers)
        assert code == 200, answer
        return [d["validating_pubkey"] for d in answer["data"]]

    def sign_attestation(
        self, public_key: bytes, source: int, target: int, block: bytes = b"\x0b" * 32
    ) -> tuple[int, Any]:
        """A Web3Signer ATTESTATION at the first slot of ``target`` (mainnet phase0 fork)."""
        body = {
            "type": "ATTESTATION",
            "fork_info": {
                "fork": {"previous_version": "0x00000000", "current_version": "0x00000000", "epoch": "0"},
                "genesis_validators_root": GVR,
            },
            "attestation": {
                "slot": str(target * 32),
                "index": "0",
                "beacon_block_root": "0x" + block.hex(),
                "source": {"epoch": str(source), "root": "0x" + "00" * 32},
                "target": {"epoch": str(target), "root": "0x" + block.hex()},
            },
        }
        return http("POST", f"{self.proc.rest_url}/api/v1/eth2/sign/0x{public_key.hex()}", body)


def keystore(password: str = PASSWORD) -> tuple[str, bytes, bytes]:
    """(keystore JSON, public key, secret) of a fresh key, with a cheap KDF."""
    secret = bls.random_secret()
    public_key = bls.secret_to_public(secret)
    kdf = eip2335.KdfParams("pbkdf2", secrets.token_bytes(32), 32, c=1000)
    return json.dumps(eip2335.encrypt_keystore(secret, password, kdf=kdf, pubkey=public_key)), public_key, secret


def interchange(*entries: tuple[bytes, list[tuple[int, int]]]) -> str:
    return json.dumps(
        {
            "metadata": {"interchange_format_version": "5", "genesis_validators_root": GVR},
            "data": [
                {
                    "pubkey": "0x" + pk.hex(),
                    "signed_blocks": [],
                    "signed_attestations": [{"source_epoch": str(s), "target_epoch": str(t)} for s, t in atts],
                }
                for pk, atts in entries
            ],
        }
    )


def token_of(data_dir: Path) -> str:
    return (data_dir / TOKEN_FILE).read_text().strip()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keymanager]:
    data_dir = tmp_path_factory.mktemp("keymanager") / "data"
    with SignerProcess.dev(data_dir, dev_keys=1) as proc:
        yield Keymanager(proc, token_of(data_dir))


# --- serve --dev --------------------------------------------------------------------------------


def test_the_token_file_is_created_0600_and_calls_without_it_are_refused(dev: Keymanager) -> None:
    token_path = Path(dev.proc.args[dev.proc.args.index("--data-dir") + 1]) / TOKEN_FILE
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert len(dev.token) == 64 and int(dev.token, 16) >= 0
    code, answer = http("GET", dev.url)
    assert code == 401 and "no bearer token" in answer["message"]
    code, answer = http("GET", dev.url, token="0" * 64)
    assert code == 403 and "wrong bearer token" in answer["message"]
    code, answer = http("DELETE", dev.url, {"pubkeys": []}, token="0" * 64)
    assert code == 403


def test_import_list_delete_and_the_retained_history(dev: Keymanager) -> None:
    first, first_key, _ = keystore()
    wrong, _, _ = keystore("another password")
    third, third_key, _ = keystore()
    code, answer = dev.import_([first, wrong, third], [PASSWORD] * 3)
    assert code == 200, answer
    assert [d["status"] for d in answer["data"]] == ["imported", "error", "imported"], answer
    assert "password" in answer["data"][1]["message"]
    code, answer = dev.import_([first], [PASSWORD])
    assert [d["status"] for d in answer["data"]] == ["duplicate"]

    # with history: only the imported key's history is imported, and it binds its next signature
    with_history, history_key, _ = keystore()
    refused, refused_key, _ = keystore("yet another password")
    document = interchange((history_key, [(3, 4)]), (refused_key, [(3, 4)]))
    code, answer = dev.import_([with_history, refused], [PASSWORD, PASSWORD], document)
    assert code == 200, answer
    assert [d["status"] for d in answer["data"]] == ["imported", "error"]
    assert set(dev.listed()) >= {"0x" + pk.hex() for pk in (first_key, third_key, history_key)}
    code, answer = dev.sign_attestation(history_key, 0, 1)
    assert code == 412, answer
    code, answer = dev.sign_attestation(history_key, 4, 5)
    assert code == 200, answer
    code, answer = dev.delete(refused_key)
    assert [d["status"] for d in answer["data"]] == ["not_found"], "history imported for a key not imported"

    # delete: stops signing, returns the history, retains it
    code, answer = dev.sign_attestation(first_key, 0, 1)
    assert code == 200, answer
    code, answer = dev.delete(first_key)
    assert code == 200, answer
    assert [d["status"] for d in answer["data"]] == ["deleted"]
    history = json.loads(answer["slashing_protection"])
    assert history["metadata"]["genesis_validators_root"] == GVR
    (entry,) = history["data"]
    assert entry["pubkey"] == "0x" + first_key.hex()
    assert [(a["source_epoch"], a["target_epoch"]) for a in entry["signed_attestations"]] == [("0", "1")]
    assert "0x" + first_key.hex() not in dev.listed()
    code, answer = dev.sign_attestation(first_key, 1, 2)
    assert code == 404, answer
    code, again = dev.delete(first_key)
    assert code == 200
    assert [d["status"] for d in again["data"]] == ["not_active"]
    assert json.loads(again["slashing_protection"]) == history
    never_seen = bls.secret_to_public(bls.random_secret())
    code, answer = dev.delete(never_seen)
    assert code == 200 and [d["status"] for d in answer["data"]] == ["not_found"]
    assert json.loads(answer["slashing_protection"])["data"] == []

    audit = [json.loads(line) for line in dev.proc.stdout.splitlines() if line.startswith("{")]
    deleted = [r for r in audit if r.get("method") == "KeymanagerDeleteKeys" and r.get("key") == "0x" + first_key.hex()]
    assert deleted and all(r["outcome"] == "succeeded" for r in deleted)


def test_a_malformed_request_is_400_naming_the_problem(dev: Keymanager) -> None:
    code, answer = dev.import_(["{}"], [])
    assert code == 400 and "1 keystores" in answer["message"]
    code, answer = http("DELETE", dev.url, {"pubkeys": ["0xzz"]}, token=dev.token)
    assert code == 400 and "pubkeys.0" in answer["message"]


# --- a PKCS#11 token ----------------------------------------------------------------------------


def test_a_key_imported_over_the_keymanager_api_is_held_by_the_pkcs11_module(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc = SignerProcess.pkcs11_dev(data_dir, dev_keys=1, extra_args=["--http-listen", "127.0.0.1:0"])
    with data_dir.with_name(data_dir.name + ".toml").open("a") as config:  # the file pkcs11_dev wrote
        config.write("\n[admin]\nsecond_factor = false\nrequire_approval = []\n")  # its own test below
    body, public_key, secret = keystore()
    with proc:
        api = Keymanager(proc, token_of(data_dir))
        code, answer = api.import_([body], [PASSWORD])
        assert code == 200 and [d["status"] for d in answer["data"]] == ["imported"], answer
        assert "0x" + public_key.hex() in api.listed()
        code, answer = api.sign_attestation(public_key, 0, 1)
        assert code == 200, answer
        assert bls.verify(public_key, _root_of(api, public_key, 0, 1), bytes.fromhex(answer["signature"][2:]))
    for path in (p for p in data_dir.rglob("*") if p.is_file()):
        content = path.read_bytes()
        assert secret not in content and secret.hex().encode() not in content.lower(), path
        assert b'"crypto"' not in content, f"{path} holds a keystore"
    with proc.restart():
        api = Keymanager(proc, token_of(data_dir))
        assert "0x" + public_key.hex() in api.listed()
        code, answer = api.sign_attestation(public_key, 1, 2)
        assert code == 200, answer


def _root_of(api: Keymanager, public_key: bytes, source: int, target: int) -> bytes:
    """The signing root of ``Keymanager.sign_attestation``'s message, from the reference code."""
    block = b"\x0b" * 32
    data_root = ref_attestation_data_root(target * 32, 0, block, (source, b"\x00" * 32), (target, block))
    return ref_signing_root(data_root, ref_domain(DOMAIN_BEACON_ATTESTER))


# --- the second factor --------------------------------------------------------------------------


def test_with_the_second_factor_a_missing_code_is_refused_and_a_delete_waits_for_a_second_operator(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    pin_file, _keys = make_keys(data_dir)
    operators = {name: new_secret() for name in ("alice", "bob", "carol")}
    entries = []
    for name, secret in operators.items():
        path = tmp_path / f"{name}.otp"
        path.write_text(secret + "\n")
        path.chmod(0o600)
        entries.append(f'{{ name = "{name}", secret = {{ file = "{path}" }} }}')
    config = tmp_path / "signer.toml"
    config.write_text(
        f"""
[server]
http_listen = "127.0.0.1:0"
shutdown_grace_s = 2.0
{keys_toml(data_dir, pin_file)}
[[clients]]
name = "local"
allow_accounts = ["*"]
operations = ["key_admin", "protection_import", "protection_export", "sign_attestation"]
operators = [{", ".join(entries)}]
"""
    )
    init_protection(config)
    used: dict[str, int] = {}

    def operator(name: str) -> dict[str, str]:
        step = max(int(time.time() // STEP_S), used.get(name, -1) + 1)
        if step > int(time.time() // STEP_S) + 1:
            time.sleep(STEP_S)
        used[name] = step
        return {"X-Signer-Operator": name, "X-Signer-Otp": code_at(operators[name], step * STEP_S)}

    with SignerProcess.from_config(config) as proc:
        api = Keymanager(proc, token_of(data_dir))
        code, answer = api.list_keys()
        assert code == 403, answer
        assert answer["message"].startswith("otp_missing: "), answer
        body, public_key, _ = keystore()
        code, answer = api.import_([body], [PASSWORD], headers=operator("alice"))
        assert code == 200 and [d["status"] for d in answer["data"]] == ["imported"], answer

        code, asked = api.delete(public_key, headers=operator("alice"))
        assert code == 202, asked
        pending = asked["pending"]
        assert pending["kind"] == "delete_keys" and pending["requested_by_operator"] == "alice"
        assert "nothing done yet" in asked["message"]
        assert "0x" + public_key.hex() in api.listed_with(operator("bob"))
        code, answer = http("POST", f"{proc.rest_url}{pending['approve']}", token=api.token, headers=operator("bob"))
        assert code == 200, answer
        assert [d["status"] for d in answer["data"]] == ["deleted"]
        assert "0x" + public_key.hex() not in api.listed_with(operator("carol"))
