"""Development keys: a fixed, public seed, so every developer and test gets the same keys.

NEVER use these keys for anything of value: the seed is printed right here.

* ``DEV_SEED = sha256(b"validator-signer dev seed")`` (32 bytes).
* BLS validator ``i``: EIP-2333 ``derive_path_SK(DEV_SEED, "m/12381/3600/{i}/0/0")`` (the EIP-2334
  signing-key path), account ``dev/{i}``.
* CometBFT secp256k1: ``sha256(DEV_SEED || b"cometbft/secp256k1")`` as a big-endian scalar
  (it is in [1, n-1]; checked), account ``dev/cometbft-secp256k1``.
* CometBFT ed25519: the RFC 8032 seed ``sha256(DEV_SEED || b"cometbft/ed25519")``, account
  ``dev/cometbft-ed25519``.
* ``DEV_PIN`` is the emulated module PIN of a dev module. A dev module is exempt from the PIN policy
  (``signer.keys.pin_policy.PUBLIC_KEYS_ONLY``): every key in it derives from the seed above, so no
  PIN could protect it. The policy refuses DEV_PIN for any other module (it is published).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Final

from signer.crypto import secp256k1
from signer.keys import eip2333
from signer.keys.emulated import DEFAULT_SCRYPT_N, MODULE_FILE, EmulatedKeyModule
from signer.keys.pin_policy import PUBLIC_KEYS_ONLY
from signer.types import Scheme

DEV_SEED: Final = hashlib.sha256(b"validator-signer dev seed").digest()
DEV_PIN: Final = "validator-signer-dev-pin"
DEV_WALLET: Final = "dev"
DEV_SECP256K1_ACCOUNT: Final = "dev/cometbft-secp256k1"
DEV_ED25519_ACCOUNT: Final = "dev/cometbft-ed25519"


@functools.cache
def _validators_root() -> int:
    """The secret at m/12381/3600, shared by every validator path (saves 3 derivations per key)."""
    secret = eip2333.derive_master_SK(DEV_SEED)
    for index in (12381, 3600):
        secret = eip2333.derive_child_SK(secret, index)
    return secret


def dev_bls_secret(index: int) -> bytes:
    """The 32-byte BLS secret of dev validator ``index``: EIP-2333 at m/12381/3600/index/0/0."""
    secret = _validators_root()
    for child in (index, 0, 0):
        secret = eip2333.derive_child_SK(secret, child)
    return eip2333.secret_to_bytes(secret)


def dev_secp256k1_secret() -> bytes:
    """sha256(DEV_SEED || b"cometbft/secp256k1"), a valid secp256k1 scalar."""
    secret = hashlib.sha256(DEV_SEED + b"cometbft/secp256k1").digest()
    if not 0 < int.from_bytes(secret, "big") < secp256k1.CURVE_ORDER:  # pragma: no cover - fixed value
        raise AssertionError("dev secp256k1 secret out of range")
    return secret


def dev_ed25519_secret() -> bytes:
    """sha256(DEV_SEED || b"cometbft/ed25519"), an RFC 8032 seed."""
    return hashlib.sha256(DEV_SEED + b"cometbft/ed25519").digest()


def dev_account(index: int) -> str:
    return f"{DEV_WALLET}/{index}"


def create_dev_module(
    data_dir: Path, count: int, *, pin: str = DEV_PIN, scrypt_n: int = DEFAULT_SCRYPT_N
) -> EmulatedKeyModule:
    """A dev module with ``dev/0`` ... ``dev/{count-1}`` (BLS) and the two CometBFT keys.

    If ``data_dir`` already holds a module, it is opened (and unlocked) instead, unchanged.
    """
    if (Path(data_dir) / MODULE_FILE).exists():
        module = EmulatedKeyModule(data_dir, pin, pin_policy=PUBLIC_KEYS_ONLY)
        module.unlock()
        return module
    module = EmulatedKeyModule(data_dir, pin, create=True, scrypt_n=scrypt_n, pin_policy=PUBLIC_KEYS_ONLY)
    if not module.unlocked:  # another process created it meanwhile: open theirs
        module.unlock()
        return module
    items: list[tuple[str, Scheme, bytes]] = [(dev_account(i), Scheme.BLS, dev_bls_secret(i)) for i in range(count)]
    items.append((DEV_SECP256K1_ACCOUNT, Scheme.SECP256K1, dev_secp256k1_secret()))
    items.append((DEV_ED25519_ACCOUNT, Scheme.ED25519, dev_ed25519_secret()))
    module.import_secrets(items)
    return module
