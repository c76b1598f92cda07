"""``signer distributed import``: a pre-dealt share (Dirk/ethdo) sealed with its metadata (issue 17.3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signer.cli import PIN_ENV, main
from signer.crypto import threshold as th
from signer.distributed.accounts import DistributedAccounts
from signer.keys.eip2335 import default_kdf, encrypt_keystore
from signer.keys.emulated import MIN_SCRYPT_N, EmulatedKeyModule

PIN = "distributed-cli-pin-0123"
PASSWORD = "keystore password"  # noqa: S105 - a test keystore's password


@pytest.fixture
def share_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[th.Polynomial, Path, Path]:
    monkeypatch.setenv(PIN_ENV, PIN)
    EmulatedKeyModule(tmp_path / "keys", PIN, create=True, scrypt_n=MIN_SCRYPT_N).close()
    polynomial = th.Polynomial.random(2)
    keystore = tmp_path / "share.json"
    kdf = default_kdf("pbkdf2")
    keystore.write_text(json.dumps(encrypt_keystore(polynomial.share(2).to_bytes(), PASSWORD, kdf=kdf)))
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    return polynomial, keystore, password


def run_import(tmp_path: Path, keystore: Path, password: Path, vector: list[bytes], *extra: str) -> int:
    return main(
        [
            "distributed", "import", "--data-dir", str(tmp_path / "keys"), "--account", "dist/migrated",
            "--id", "2", "--threshold", "2", "--participants", "1=a.example:9091,2=b.example:9091,3=c.example:9091",
            "--verification-vector", ",".join("0x" + c.hex() for c in vector),
            "--keystore", str(keystore), "--password-file", str(password), *extra,
        ]
    )  # fmt: skip


def test_a_pre_dealt_share_is_sealed_with_its_metadata(
    tmp_path: Path, share_files: tuple[th.Polynomial, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    polynomial, keystore, password = share_files
    vector = polynomial.verification_vector().commitments
    assert run_import(tmp_path, keystore, password, list(vector), "--composite-key", "0x" + vector[0].hex()) == 0
    assert "imported 0x" + polynomial.share(2).public_key().hex() in capsys.readouterr().out
    module = EmulatedKeyModule(tmp_path / "keys", PIN)
    module.unlock()
    (account,) = DistributedAccounts(module, tmp_path / "keys").accounts()
    assert (account.name, account.participant_id, account.threshold) == ("dist/migrated", 2, 2)
    assert account.composite_public_key == vector[0]
    assert [(p.id, p.name, p.port) for p in account.participants] == [
        (1, "a.example", 9091),
        (2, "b.example", 9091),
        (3, "c.example", 9091),
    ]


def test_a_share_that_is_not_the_participants_point_of_the_vector_is_refused(
    tmp_path: Path, share_files: tuple[th.Polynomial, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, keystore, password = share_files
    other = th.Polynomial.random(2).verification_vector().commitments
    assert run_import(tmp_path, keystore, password, list(other)) == 1
    assert "does not match the verification vector" in capsys.readouterr().err
    module = EmulatedKeyModule(tmp_path / "keys", PIN)
    module.unlock()
    assert module.list_keys() == []


def test_a_composite_key_that_is_not_the_vectors_is_refused(
    tmp_path: Path, share_files: tuple[th.Polynomial, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    polynomial, keystore, password = share_files
    vector = list(polynomial.verification_vector().commitments)
    assert run_import(tmp_path, keystore, password, vector, "--composite-key", "0x" + vector[1].hex()) == 2
    assert "--composite-key is not element 0" in capsys.readouterr().err


def dirk_account(tmp_path: Path, polynomial: th.Polynomial, participant: int) -> Path:
    """The account file go-eth2-wallet-distributed writes (hex without 0x, participants by id)."""
    share = polynomial.share(participant)
    keystore = encrypt_keystore(share.to_bytes(), PASSWORD, kdf=default_kdf("pbkdf2"), pubkey=share.public_key())
    document = {
        "uuid": keystore["uuid"],
        "name": "validator-7",
        "pubkey": share.public_key().hex(),
        "verificationvector": [c.hex() for c in polynomial.verification_vector().commitments],
        "signing_threshold": 2,
        "participants": {"1": "a.example:13141", "2": "b.example:13141", "3": "c.example:13141"},
        "crypto": keystore["crypto"],
        "encryptor": "keystore",
        "version": 4,
    }
    path = tmp_path / "dirk-account.json"
    path.write_text(json.dumps(document))
    return path


def test_a_dirk_account_file_is_imported_and_its_participant_id_found_from_the_vector(
    tmp_path: Path, share_files: tuple[th.Polynomial, Path, Path]
) -> None:
    polynomial, _, password = share_files
    path = dirk_account(tmp_path, polynomial, participant=3)
    code = main(
        ["distributed", "import", "--data-dir", str(tmp_path / "keys"), "--account", "dirk/validator-7",
         "--dirk-account", str(path), "--password-file", str(password),
         "--participants", "1=s1.example:9091,2=s2.example:9091,3=s3.example:9091"]
    )  # fmt: skip
    assert code == 0
    module = EmulatedKeyModule(tmp_path / "keys", PIN)
    module.unlock()
    (account,) = DistributedAccounts(module, tmp_path / "keys").accounts()
    assert (account.participant_id, account.threshold) == (3, 2)
    assert account.share_public_key == polynomial.share(3).public_key()
    assert account.composite_public_key == polynomial.verification_vector().public_key
    # where the participants listen now, not where Dirk did
    assert [(p.id, p.name, p.port) for p in account.participants][2] == (3, "s3.example", 9091)


def test_a_dirk_account_file_refuses_flags_it_carries_itself(
    tmp_path: Path, share_files: tuple[th.Polynomial, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    polynomial, _, password = share_files
    path = dirk_account(tmp_path, polynomial, participant=1)
    code = main(
        ["distributed", "import", "--data-dir", str(tmp_path / "keys"), "--account", "dirk/validator-7",
         "--dirk-account", str(path), "--password-file", str(password), "--threshold", "3"]
    )  # fmt: skip
    assert code == 2
    assert "--dirk-account carries --threshold itself" in capsys.readouterr().err
