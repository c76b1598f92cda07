"""Hostile EIP-2335 keystores: a KDF over the memory or work limits is refused, named, before it runs.

Each hostile keystore is a real keystore whose KDF parameters were raised; run, they would take up to
~90 s and ~1.9 GiB (or fail inside the worker), so the timeouts below prove nothing ran.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signer.cli import PIN_ENV, main, read_keystores
from signer.crypto import bls
from signer.errors import KdfLimitExceeded, MalformedKeystore
from signer.keys import eip2335
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.importer import ImportStatus, import_keystores

PASSWORD = "hostile keystore password"  # noqa: S105 - a test keystore's password
PIN = "kdf-limits-test-pin"
SECRET = bls.random_secret()

pytestmark = pytest.mark.timeout(60)


def keystore(function: str = "pbkdf2", **params: int) -> dict[str, Any]:
    """A real keystore (cheap pbkdf2) whose KDF is then changed to ``function`` with ``params``."""
    kdf = eip2335.KdfParams("pbkdf2", b"\x07" * 32, 32, c=16)
    body = eip2335.encrypt_keystore(SECRET, PASSWORD, kdf=kdf, pubkey=bls.secret_to_public(SECRET))
    if function == "scrypt":
        body["crypto"]["kdf"] = {
            "function": "scrypt",
            "params": {"dklen": 32, "n": 2**18, "r": 8, "p": 1, "salt": "07" * 32, **params},
            "message": "",
        }
    else:
        body["crypto"]["kdf"]["params"].update(params)
    return body


HOSTILE = [
    pytest.param(
        keystore("scrypt", n=2**20, r=15, p=16),
        r"scrypt n=1048576, r=15, p=16 needs 2,013,300,480 bytes of memory \(128\*r\*\(n\+p\+2\)\), "
        r"over the limit of 1,073,741,824 \(1 GiB\)",
        id="scrypt-1.9GiB",
    ),
    pytest.param(
        keystore("scrypt", n=2**20, r=32, p=1),
        r"scrypt n=1048576, r=32, p=1 needs 4,294,979,584 bytes of memory",
        id="scrypt-r32",
    ),
    pytest.param(
        keystore("scrypt", n=2**20, r=8, p=1),
        r"scrypt n=1048576, r=8, p=1 needs 1,073,744,896 bytes of memory .* over the limit of 1,073,741,824",
        id="scrypt-just-over-1GiB",
    ),
    pytest.param(
        keystore("scrypt", n=2**17, r=8, p=16),
        r"scrypt n=131072, r=8, p=16 is 8\.0 times the work of a standard keystore, over the limit of 4 "
        r"\(n\*r\*p at most 8,388,608\)",
        id="scrypt-p16",
    ),
    pytest.param(
        keystore(c=2**24),
        r"pbkdf2 c=16777216 is 64\.0 times the work of a standard keystore, over the limit of 4 "
        r"\(c at most 1,048,576\)",
        id="pbkdf2-2**24",
    ),
]


@pytest.mark.parametrize(("body", "message"), HOSTILE)
def test_hostile_kdf_is_refused_by_the_parser_naming_parameter_and_limit(body: dict[str, Any], message: str) -> None:
    with pytest.raises(KdfLimitExceeded, match=r"^ks\.json: crypto\.kdf\.params: " + message):
        eip2335.parse_keystore(json.dumps(body), source="ks.json")
    assert issubclass(KdfLimitExceeded, MalformedKeystore)


def test_standard_keystores_are_within_the_limits() -> None:
    for kdf in (eip2335.default_kdf("scrypt"), eip2335.default_kdf("pbkdf2")):
        eip2335.check_kdf_limits(kdf)
        assert eip2335.kdf_work(kdf) == 1.0
    eip2335.check_kdf_limits(eip2335.KdfParams("scrypt", b"", 32, n=2**19, r=8, p=1))  # 512 MiB
    eip2335.check_kdf_limits(eip2335.KdfParams("pbkdf2", b"", 32, c=2**20))


def test_the_kdf_itself_refuses_parameters_over_the_limits() -> None:
    """No path runs an unbounded KDF, not even one that skipped the parser."""
    with pytest.raises(KdfLimitExceeded, match="over the limit of 1,073,741,824"):
        eip2335.derive_decryption_key(PASSWORD, eip2335.KdfParams("scrypt", b"\x01" * 32, 32, n=2**20, r=32, p=1))


def test_importer_reports_hostile_keystores_as_malformed_and_imports_the_rest(tmp_path: Path) -> None:
    module = EmulatedKeyModule(tmp_path / "data", PIN, create=True, scrypt_n=2**10)
    paths = []
    for n, param in enumerate(HOSTILE):
        path = tmp_path / f"hostile-{n}.json"
        path.write_text(json.dumps(param.values[0]))
        paths.append(path)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(keystore()))
    results = import_keystores(module, read_keystores([*paths, good], PASSWORD), workers=1, progress=False)
    assert [r.status for r in results] == [ImportStatus.MALFORMED] * len(HOSTILE) + [ImportStatus.IMPORTED]
    assert all("over the limit" in r.message and "crypto.kdf.params" in r.message for r in results[:-1])
    assert not any("worker failed" in r.message for r in results)


def test_importer_refuses_a_call_over_its_work_budget_before_any_kdf(tmp_path: Path) -> None:
    module = EmulatedKeyModule(tmp_path / "data", PIN, create=True, scrypt_n=2**10)
    paths = []
    for n in range(3):
        path = tmp_path / f"costly-{n}.json"
        path.write_text(json.dumps(keystore(c=2**20)))  # 4 standard keystores of work each
        paths.append(path)
    with pytest.raises(KdfLimitExceeded, match=r"the 3 keystores to decrypt need 12\.0 .* over the limit of 10 per"):
        import_keystores(module, read_keystores(paths, PASSWORD), workers=1, progress=False, max_work=10)
    assert module.list_keys() == []


def test_cli_import_of_a_hostile_keystore_says_why_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PIN_ENV, PIN)
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(keystore("scrypt", n=2**20, r=15, p=16)))
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    args = ["keys", "import", "--quiet", "--data-dir", str(tmp_path / "data"), "--password-file", str(tmp_path / "pw")]
    assert main([*args, str(path)]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        f"malformed       ({path}): crypto.kdf.params: scrypt n=1048576, r=15, p=16 needs 2,013,300,480 bytes of "
        "memory (128*r*(n+p+2)), over the limit of 1,073,741,824 (1 GiB)"
    ]
    assert "Traceback" not in out.err
