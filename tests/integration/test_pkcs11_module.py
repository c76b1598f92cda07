"""PKCS#11-specific behaviour on a real SoftHSM2 token: attributes, threads, errors, sealing."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import coincurve
import pytest

from signer.crypto import bls, ed25519, secp256k1
from signer.errors import KeyModuleError, ModuleTampered, WrongPin
from signer.keys.pkcs11 import SEALED_FILE_NAME, Pkcs11KeyModule
from signer.types import KeyInfo, Scheme
from tests.softhsm import SoftHsm, pkcs11_tool, softhsm, wipe_token  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

THREADS = 8
THREAD_TEST_ENV = "SIGNER_PKCS11_THREAD_TEST_S"
DEFAULT_THREAD_TEST_S = 10.0


def _module(hsm: SoftHsm, purpose: str, data_dir: Path, **kwargs: int) -> Pkcs11KeyModule:
    return Pkcs11KeyModule(hsm.library_path, hsm.label(purpose), hsm.pin, data_dir, **kwargs)


@pytest.fixture
def attributes_module(softhsm: SoftHsm, tmp_path: Path) -> Iterator[Pkcs11KeyModule]:  # noqa: F811
    wipe_token(softhsm, softhsm.label("attributes"), tmp_path / "wipe")
    module = _module(softhsm, "attributes", tmp_path)
    module.unlock()
    yield module
    module.close()
    wipe_token(softhsm, softhsm.label("attributes"), tmp_path / "wipe")


def parse_pkcs11_tool_objects(text: str) -> list[dict[str, str]]:
    """``pkcs11-tool --list-objects`` output -> one dict per object (``kind`` is its header line)."""
    objects: list[dict[str, str]] = []
    for line in text.splitlines():
        if line and not line.startswith(" ") and "Object" in line:
            objects.append({"kind": line.strip()})
        elif objects and line.startswith("  ") and ":" in line:
            field, _, value = line.strip().partition(":")
            objects[-1][field.strip()] = value.strip()
    return objects


def test_pkcs11_tool_shows_every_private_key_sensitive_and_not_extractable(
    softhsm: SoftHsm,  # noqa: F811
    attributes_module: Pkcs11KeyModule,
    pkcs11_tool: str,  # noqa: F811
) -> None:
    module = attributes_module
    module.generate("wallet/gen-secp", Scheme.SECP256K1)
    module.generate("wallet/gen-ed", Scheme.ED25519)
    module.generate("wallet/gen-bls", Scheme.BLS)
    module.import_secret("wallet/imp-secp", Scheme.SECP256K1, b"\x11" * 32)
    module.import_secret("wallet/imp-ed", Scheme.ED25519, b"\x22" * 32)
    result = subprocess.run(
        [pkcs11_tool, "--module", str(softhsm.library_path), "--token-label", softhsm.label("attributes"),
         "--login", "--pin", softhsm.pin, "--list-objects"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    objects = parse_pkcs11_tool_objects(result.stdout)
    private = [o for o in objects if o["kind"].startswith("Private Key Object")]
    secret = [o for o in objects if o["kind"].startswith("Secret Key Object")]
    assert sorted(o["label"] for o in private) == [
        "wallet/gen-ed", "wallet/gen-secp", "wallet/imp-ed", "wallet/imp-secp",
    ]  # fmt: skip
    assert [o["label"] for o in secret] == ["validator-signer/bls-seal"]
    for obj in private + secret:
        access = [a.strip() for a in obj["Access"].split(",")]
        assert "sensitive" in access, obj
        assert "extractable" not in access, obj
        if obj["label"].startswith("wallet/gen") or obj in secret:
            assert "never extractable" in access, obj
    # Generated keys: the EC params are the secp256k1 OID and id-Ed25519.
    public = {o["label"]: o for o in objects if o["kind"].startswith("Public Key Object")}
    assert public["wallet/gen-secp"]["EC_PARAMS"] == "06052b8104000a"
    assert public["wallet/gen-ed"]["EC_PARAMS"].startswith("06032b6570")


def test_sealed_file_holds_no_plaintext_and_refuses_tampering(
    softhsm: SoftHsm,  # noqa: F811
    attributes_module: Pkcs11KeyModule,
    tmp_path: Path,
) -> None:
    secret = bytes.fromhex("263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3")
    info = attributes_module.import_secret("wallet/sealed", Scheme.BLS, secret)
    attributes_module.close()
    path = tmp_path / SEALED_FILE_NAME
    raw = path.read_bytes()
    assert secret.hex().encode() not in raw and secret not in raw
    doc = json.loads(raw)
    assert [k["public_key"] for k in doc["keys"]] == [info.public_key.hex()]
    # Flip one bit of the ciphertext: unlock refuses, naming the key, never a crash.
    ciphertext = bytearray.fromhex(doc["keys"][0]["ciphertext"])
    ciphertext[0] ^= 1
    doc["keys"][0]["ciphertext"] = ciphertext.hex()
    path.write_text(json.dumps(doc), encoding="utf-8")
    tampered = _module(softhsm, "attributes", tmp_path)
    with pytest.raises(ModuleTampered, match=info.public_key.hex()):
        tampered.unlock()
    assert not tampered.unlocked
    # The same file presented with another key's public key as AAD also fails.
    ciphertext[0] ^= 1  # restore the genuine ciphertext
    doc["keys"][0]["ciphertext"] = ciphertext.hex()
    doc["keys"][0]["public_key"] = bls.secret_to_public(b"\x00" * 31 + b"\x05").hex()
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ModuleTampered):
        _module(softhsm, "attributes", tmp_path).unlock()


def test_sealed_file_on_another_token_is_refused(softhsm: SoftHsm, tmp_path: Path) -> None:  # noqa: F811
    wipe_token(softhsm, softhsm.label("attributes"), tmp_path / "wipe")
    first = _module(softhsm, "attributes", tmp_path)
    first.unlock()
    first.generate("wallet/bls", Scheme.BLS)
    first.close()
    other = _module(softhsm, "errors", tmp_path)  # same data_dir, another token (no or another seal key)
    with pytest.raises(ModuleTampered):
        other.unlock()
    wipe_token(softhsm, softhsm.label("attributes"), tmp_path / "wipe")


def test_recovery_id_recovers_the_public_key(attributes_module: Pkcs11KeyModule) -> None:
    info = attributes_module.generate("wallet/recover", Scheme.SECP256K1)
    for i in range(10):
        digest = hashlib.sha256(bytes([i])).digest()
        signature, recovery_id = attributes_module.sign_recoverable(info.public_key, digest)
        assert secp256k1.is_low_s(signature)
        recovered = coincurve.PublicKey.from_signature_and_message(
            signature + bytes([recovery_id]), digest, hasher=None
        )
        assert recovered.format(compressed=True) == info.public_key


# --- errors -----------------------------------------------------------------------------------


def test_missing_token_and_library_are_named_errors(softhsm: SoftHsm, tmp_path: Path) -> None:  # noqa: F811
    absent = Pkcs11KeyModule(softhsm.library_path, "no-such-token", softhsm.pin, tmp_path)
    with pytest.raises(KeyModuleError, match="'no-such-token'") as excinfo:
        absent.unlock()
    assert softhsm.pin not in str(excinfo.value)
    no_library = Pkcs11KeyModule(tmp_path / "libnothing.so", "contract", softhsm.pin, tmp_path)
    with pytest.raises(KeyModuleError, match=r"libnothing\.so") as excinfo:
        no_library.unlock()
    assert "'contract'" in str(excinfo.value) and softhsm.pin not in str(excinfo.value)
    not_a_library = tmp_path / "garbage.so"
    not_a_library.write_bytes(b"not an ELF file")
    with pytest.raises(KeyModuleError, match=r"garbage\.so"):
        Pkcs11KeyModule(not_a_library, "contract", softhsm.pin, tmp_path).unlock()


def test_wrong_pin_first_login_and_while_logged_in(softhsm: SoftHsm, tmp_path: Path) -> None:  # noqa: F811
    label = softhsm.label("attributes")
    wrong = Pkcs11KeyModule(softhsm.library_path, label, "0000-wrong", tmp_path)
    with pytest.raises(WrongPin, match=f"'{label}'") as excinfo:
        wrong.unlock()  # nobody logged in: a real C_Login -> CKR_PIN_INCORRECT
    assert "0000-wrong" not in str(excinfo.value)
    assert wrong.verify_pin(softhsm.pin) and not wrong.verify_pin("0000-wrong")
    good = _module(softhsm, "attributes", tmp_path)
    good.unlock()
    try:
        with pytest.raises(WrongPin):
            wrong.unlock()  # logged in by `good`: the shared login compares the PIN
        assert good.verify_pin(softhsm.pin) and not good.verify_pin("0000-wrong")
        assert good.unlocked and not wrong.unlocked
    finally:
        good.close()


_VANISHING_SCRIPT = r"""
import hashlib, json, subprocess, sys
from pathlib import Path
from signer.errors import SignerError
from signer.keys.pkcs11 import Pkcs11KeyModule
from signer.types import Scheme
library, label, pin, data_dir = sys.argv[1:5]
module = Pkcs11KeyModule(Path(library), label, pin, Path(data_dir))
module.unlock()
keys = [module.generate(f"wallet/gone-{s}", s) for s in (Scheme.SECP256K1, Scheme.ED25519)]
digest = hashlib.sha256(b"m").digest()
results = {"before": len(module.sign(keys[0].public_key, digest))}
subprocess.run(["softhsm2-util", "--delete-token", "--token", label], check=True, capture_output=True)
def attempt(name, call):
    try:
        call()
        results[name] = "no error"
    except SignerError as exc:
        results[name] = [type(exc).__name__, exc.message]
attempt("sign_secp256k1", lambda: module.sign(keys[0].public_key, digest))
attempt("sign_ed25519", lambda: module.sign(keys[1].public_key, b"m"))
attempt("generate", lambda: module.generate("wallet/after", Scheme.ED25519))
module.close()
attempt("unlock", lambda: Pkcs11KeyModule(Path(library), label, pin, Path(data_dir)).unlock())
print(json.dumps(results))
"""


def test_vanishing_token_gives_named_errors_not_a_crash(softhsm: SoftHsm, tmp_path: Path) -> None:  # noqa: F811
    """A token deleted under a running module (in a child process with its own token directory:
    SoftHSM cannot enumerate slots any more afterwards, which would break the other tests)."""
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n", encoding="utf-8")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "vanishing", "--so-pin", softhsm.so_pin,
         "--pin", softhsm.pin],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    child = subprocess.run(
        [sys.executable, "-c", _VANISHING_SCRIPT, str(softhsm.library_path), "vanishing", softhsm.pin,
         str(tmp_path / "data")],
        check=False, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert child.returncode == 0, child.stdout + child.stderr
    results = json.loads(child.stdout.strip().splitlines()[-1])
    assert results.pop("before") == 64
    assert set(results) == {"sign_secp256k1", "sign_ed25519", "generate", "unlock"}
    for name, outcome in results.items():
        assert outcome != "no error", name
        kind, message = outcome
        assert kind == "KeyModuleError", (name, outcome)
        assert "'vanishing'" in message, (name, message)
        assert softhsm.pin not in message


def _verifies(scheme: Scheme, public_key: bytes, message: bytes, signature: bytes) -> bool:
    if scheme is Scheme.SECP256K1:
        return secp256k1.is_low_s(signature) and secp256k1.verify_digest(public_key, message, signature)
    if scheme is Scheme.ED25519:
        return ed25519.verify(public_key, message, signature)
    return bls.verify(public_key, message, signature)


# --- threads: CKF_OS_LOCKING_OK -----------------------------------------------------------------

_CONTROL_SCRIPT = r"""
import os, sys, threading, time
from pathlib import Path
import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters
library, label, pin, seconds, mode = sys.argv[1:6]
if mode == "fixed":
    from signer.keys.pkcs11 import Pkcs11KeyModule
    Pkcs11KeyModule(Path(library), label, pin, Path(os.environ["CONTROL_DATA_DIR"])).unlock()
lib = pkcs11.lib(str(Path(library).resolve()))  # the instance python-pkcs11 (and the module) loaded
token = lib.get_token(token_label=label)
first = token.open(rw=True, user_pin=None if mode == "fixed" else pin)
first.generate_keypair(KeyType.EC, 0, store=False,
    public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.132.0.10")})
sessions = [token.open() for _ in range(2)]
deadline = time.monotonic() + float(seconds)
errors, counts = [], []
def work(session):
    key = next(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
    n = 0
    while time.monotonic() < deadline and not errors:
        try:
            key.sign(os.urandom(32), mechanism=Mechanism.ECDSA)
            session.generate_random(64)
            n += 1
        except Exception as exc:
            errors.append(type(exc).__name__)
    counts.append(n)
threads = [threading.Thread(target=work, args=(s,)) for s in sessions]
for t in threads: t.start()
for t in threads: t.join()
print("errors", errors[:3], "signatures", sum(counts), flush=True)
sys.exit(3 if errors else 0)
"""


_CONTROL_GRACE_S = 60.0
"""How long past its workload a control run may take before it counts as hung (start-up under load
takes seconds; a deadlocked SoftHSM never ends)."""


def _run_control(hsm: SoftHsm, mode: str, seconds: float, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the control workload; a run that outlives its workload by _CONTROL_GRACE_S is killed and
    reported with the kill's returncode and "hung" in stderr (the threads deadlocked inside the library)."""
    env = {**os.environ, "SOFTHSM2_CONF": str(hsm.conf_path), "CONTROL_DATA_DIR": str(data_dir)}
    args = [sys.executable, "-c", _CONTROL_SCRIPT, str(hsm.library_path), hsm.label("threads"), hsm.pin,
            str(seconds), mode]  # fmt: skip
    try:
        return subprocess.run(
            args, check=False, capture_output=True, text=True, timeout=seconds + _CONTROL_GRACE_S, env=env
        )
    except subprocess.TimeoutExpired as exc:
        stderr = f"{_text(exc.stderr)}\nhung: killed after {exc.timeout} s"
        return subprocess.CompletedProcess(args, returncode=-signal.SIGKILL, stdout=_text(exc.stdout), stderr=stderr)


def _text(output: bytes | str | None) -> str:
    if output is None:
        return ""
    return output if isinstance(output, str) else output.decode(errors="replace")


def test_without_os_locking_two_threads_break_softhsm(softhsm: SoftHsm, tmp_path: Path) -> None:  # noqa: F811
    """The control: python-pkcs11 alone (C_Initialize(NULL)) crashes, errors or deadlocks within
    seconds (CI saw the deadlock: the run never ended)."""
    result = _run_control(softhsm, "plain", 10.0, tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr


def test_with_os_locking_the_same_two_threads_run_clean(softhsm: SoftHsm, tmp_path: Path) -> None:  # noqa: F811
    """The same workload after Pkcs11KeyModule has re-initialised the library with OS locking."""
    result = _run_control(softhsm, "fixed", 3.0, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "signatures" in result.stdout


@pytest.mark.slow
def test_eight_threads_mixed_signing_on_softhsm(softhsm: SoftHsm, tmp_path: Path) -> None:  # noqa: F811, C901 -- one concurrency scenario read top to bottom
    """8 threads sign secp256k1/ed25519/BLS through one module for SIGNER_PKCS11_THREAD_TEST_S
    seconds (default 10); every signature is verified; nothing may crash or err."""
    duration_s = float(os.environ.get(THREAD_TEST_ENV, DEFAULT_THREAD_TEST_S))
    wipe_token(softhsm, softhsm.label("threads"), tmp_path / "wipe")
    module = _module(softhsm, "threads", tmp_path, pool_size=THREADS)
    module.unlock()
    try:
        keys: list[KeyInfo] = []
        for scheme in (Scheme.SECP256K1, Scheme.ED25519, Scheme.BLS):
            keys += [module.generate(f"wallet/t-{scheme}-{i}", scheme) for i in range(3)]
        deadline = time.monotonic() + duration_s
        failures: list[str] = []
        counts: dict[Scheme, int] = dict.fromkeys(Scheme, 0)
        lock = threading.Lock()

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            local: dict[Scheme, int] = dict.fromkeys(Scheme, 0)
            try:
                while time.monotonic() < deadline and not failures:
                    info = rng.choice(keys)
                    payload = rng.randbytes(32)
                    if rng.random() < 0.2:
                        batch = [(k.public_key, payload) for k in rng.sample(keys, 3)]
                        signatures = module.sign_many(batch)
                        pairs = list(zip(batch, signatures, strict=True))
                    else:
                        pairs = [((info.public_key, payload), module.sign(info.public_key, payload))]
                    for (public_key, message), signature in pairs:
                        scheme = module.key_info(public_key).scheme
                        ok = _verifies(scheme, public_key, message, signature)
                        if not ok:
                            failures.append(f"bad {scheme} signature from thread {seed}")
                        local[scheme] += 1
            except Exception as exc:  # a failure of any kind is recorded and fails the test
                failures.append(f"thread {seed}: {type(exc).__name__}: {exc}")
            with lock:
                for scheme, n in local.items():
                    counts[scheme] += n

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=duration_s + 60)
        assert not any(t.is_alive() for t in threads), "a signing thread hung"
        assert failures == []
        assert all(counts[s] > 0 for s in Scheme), counts
        print(f"8 threads, {duration_s:.0f} s: {counts}")
    finally:
        module.close()
        wipe_token(softhsm, softhsm.label("threads"), tmp_path / "wipe")


def test_build_key_module_opens_the_configured_token(softhsm: SoftHsm, tmp_path: Path) -> None:  # noqa: F811
    from signer.app import build_key_module  # noqa: PLC0415 - the composition root, only here
    from signer.config import KeysConfig  # noqa: PLC0415

    (tmp_path / "pin").write_text(softhsm.pin + "\n", encoding="utf-8")
    keys = KeysConfig.model_validate(
        {
            "module": "pkcs11",
            "data_dir": str(tmp_path / "data"),
            "pkcs11": {
                "library_path": str(softhsm.library_path),
                "token_label": softhsm.label("attributes"),
                "pin": {"file": str(tmp_path / "pin")},
            },
        }
    )
    module = build_key_module(keys)
    try:
        assert module.kind == "pkcs11" and module.unlocked
        info = module.generate("wallet/from-config", Scheme.ED25519)
        assert ed25519.verify(info.public_key, b"m", module.sign(info.public_key, b"m"))
    finally:
        module.close()
        wipe_token(softhsm, softhsm.label("attributes"), tmp_path / "wipe")


def test_a_pkcs11_module_holds_a_share_of_a_distributed_account(
    attributes_module: Pkcs11KeyModule, tmp_path: Path
) -> None:
    """Issue 17.3: a share is sealed by the token like any BLS key, its record is sealed by the share
    (signed in the module) and read back, and its partial signature combines with another share's."""
    from signer.crypto import threshold as th  # noqa: PLC0415
    from signer.distributed.accounts import DistributedAccounts  # noqa: PLC0415
    from signer.distributed.dkg import Endpoint  # noqa: PLC0415

    polynomial = th.Polynomial.random(2)
    vector = polynomial.verification_vector()
    participants = [Endpoint(i, "127.0.0.1", 9000 + i) for i in (1, 2, 3)]
    accounts = DistributedAccounts(attributes_module, tmp_path)
    accounts.add(
        "dist/hsm",
        polynomial.share(1),
        threshold=2,
        participants=participants,
        composite_public_key=vector.public_key,
        verification_vector=vector.commitments,
    )
    share_key = polynomial.share(1).public_key()
    assert [k.public_key for k in attributes_module.list_keys() if k.name == "dist/hsm"] == [share_key]
    (account,) = DistributedAccounts(attributes_module, tmp_path).accounts()  # the seal verifies
    assert account.composite_public_key == vector.public_key
    message = hashlib.sha256(b"partial").digest()
    partial = attributes_module.sign(share_key, message)
    combined = th.combine_signatures({1: partial, 3: polynomial.share(3).sign(message)}, 2)
    assert bls.verify(vector.public_key, message, combined)
