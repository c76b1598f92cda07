"""KeyRing: the index of the keys a running signer signs with (signer/keys/keyring.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from signer import errors
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.types import KeyInfo, KeyRef, Scheme

PIN = "unit-test-module-pin"


@pytest.fixture
def module(tmp_path: Path) -> Iterator[EmulatedKeyModule]:
    m = EmulatedKeyModule(tmp_path / "keys", PIN, create=True, scrypt_n=1024)
    m.generate_many(["w/0", "w/1"], Scheme.BLS)
    m.generate("comet/a", Scheme.ED25519)
    yield m
    m.close()


class ListsTwice(EmulatedKeyModule):
    """The real module, whose list names one key twice (as a broken module could)."""

    twice: KeyInfo | None = None

    def list_keys(self) -> list[KeyInfo]:
        keys = super().list_keys()
        return [*keys, self.twice] if self.twice is not None else keys


def test_a_key_resolves_by_account_and_by_public_key(module: EmulatedKeyModule) -> None:
    ring = KeyRing(module)
    key = ring.lookup(KeyRef(account="w/0"))
    assert ring.lookup(KeyRef(public_key=key.public_key)) == key
    assert ring.resolve(KeyRef(account="w/0"), Scheme.BLS) == key
    with pytest.raises(errors.UnknownKey, match="w/9"):
        ring.lookup(KeyRef(account="w/9"))
    with pytest.raises(errors.MalformedRequest, match="exactly one"):
        ring.lookup(KeyRef())
    with pytest.raises(errors.MalformedRequest, match="exactly one"):
        ring.lookup(KeyRef(account="w/0", public_key=key.public_key))
    with pytest.raises(errors.UnsupportedScheme):
        ring.resolve(KeyRef(account="comet/a"), Scheme.BLS)


def test_a_locked_key_is_refused_until_unlocked(module: EmulatedKeyModule) -> None:
    ring = KeyRing(module, chains={"chain-a": "comet/a"})
    bls = ring.lookup(KeyRef(account="w/1"))
    comet = ring.chain_key("chain-a")
    ring.lock(bls)
    ring.lock(comet)
    with pytest.raises(errors.KeyLocked):
        ring.resolve(KeyRef(account="w/1"), Scheme.BLS)
    with pytest.raises(errors.KeyLocked):
        ring.chain_key("chain-a")
    ring.unlock(bls)
    ring.unlock(comet)
    assert ring.resolve(KeyRef(account="w/1"), Scheme.BLS) == bls
    assert ring.chain_key("chain-a") == comet


def test_a_chain_resolves_to_its_configured_key_of_a_consensus_scheme(module: EmulatedKeyModule) -> None:
    ring = KeyRing(module, chains={"chain-a": "comet/a", "chain-bls": "w/0", "chain-gone": "comet/x"})
    assert ring.chain_key("chain-a").name == "comet/a"
    with pytest.raises(errors.UnknownKey, match="chain-z"):
        ring.chain_key("chain-z")
    with pytest.raises(errors.UnsupportedScheme, match="chain-bls"):
        ring.chain_key("chain-bls")
    with pytest.raises(errors.UnknownKey, match="comet/x"):
        ring.chain_key("chain-gone")


def test_a_retired_key_resolves_to_nothing_until_readmitted(module: EmulatedKeyModule) -> None:
    ring = KeyRing(module)
    key = ring.lookup(KeyRef(account="w/0"))
    ring.retire_keys([key.public_key])
    assert not ring.is_live(key.public_key)
    assert key not in ring.list_keys()
    ring.reload_keys()  # a reload keeps it out
    with pytest.raises(errors.UnknownKey):
        ring.lookup(KeyRef(account="w/0"))
    ring.readmit_keys([key.public_key])
    assert ring.is_live(key.public_key)
    assert ring.lookup(KeyRef(account="w/0")) == key


def test_a_locked_module_has_no_keys(module: EmulatedKeyModule) -> None:
    module.lock()
    assert KeyRing(module).list_keys() == []


@pytest.mark.parametrize("same", ["name", "public_key"])
def test_a_module_listing_a_key_twice_is_refused_and_the_index_kept(tmp_path: Path, same: str) -> None:
    module = ListsTwice(tmp_path / "keys", PIN, create=True, scrypt_n=1024)
    try:
        first, second = module.generate_many(["w/0", "w/1"], Scheme.BLS)
        ring = KeyRing(module)
        if same == "name":
            module.twice = KeyInfo("other", first.name, Scheme.BLS, b"\x01" * 48)
        else:
            module.twice = KeyInfo("other", "w/other", Scheme.BLS, second.public_key)
        with pytest.raises(errors.DuplicateKey, match="twice"):
            ring.reload_keys()
        assert ring.list_keys() == sorted([first, second], key=lambda k: k.name)
    finally:
        module.close()


class OneShare:
    """ValidatorKeys as signer.distributed.accounts answers it: ``share`` is held for ``composite``."""

    def __init__(self, share: bytes, composite: bytes) -> None:
        self.share, self.composite = share, composite

    def history_key(self, public_key: bytes) -> bytes:
        return self.composite if public_key == self.share else public_key

    def key_for(self, public_key: bytes) -> bytes | None:
        return self.share if public_key == self.composite else None


def test_a_composite_key_names_the_share_held_which_signs_under_its_history(module: EmulatedKeyModule) -> None:
    composite = b"\x07" * 48
    share = KeyRing(module).lookup(KeyRef(account="w/0"))
    other = KeyRing(module).lookup(KeyRef(account="w/1"))
    ring = KeyRing(module, validator_keys=OneShare(share.public_key, composite))
    assert ring.lookup(KeyRef(public_key=composite)) == share
    assert ring.resolve(KeyRef(public_key=composite), Scheme.BLS) == share
    assert ring.history_key(share) == composite
    assert ring.history_key(other) == other.public_key
    with pytest.raises(errors.UnknownKey):  # without the shares, a composite key names nothing
        KeyRing(module).lookup(KeyRef(public_key=composite))
    assert KeyRing(module).history_key(share) == share.public_key


class CountingShares(OneShare):
    """OneShare, counting the questions asked of it."""

    def __init__(self, share: bytes, composite: bytes) -> None:
        super().__init__(share, composite)
        self.asked = 0

    def history_key(self, public_key: bytes) -> bytes:
        self.asked += 1
        return super().history_key(public_key)

    def key_for(self, public_key: bytes) -> bytes | None:
        self.asked += 1
        return super().key_for(public_key)


def test_shares_are_known_at_load_and_a_plain_key_never_asks_the_distributed_accounts(
    module: EmulatedKeyModule,
) -> None:
    composite = b"\x07" * 48
    share = KeyRing(module).lookup(KeyRef(account="w/0"))
    plain = KeyRing(module).lookup(KeyRef(account="w/1"))
    shares = CountingShares(share.public_key, composite)
    ring = KeyRing(module, validator_keys=shares)
    assert ring.history_keys == {share.public_key: composite}
    shares.asked = 0
    for ref in (KeyRef(account="w/1"), KeyRef(public_key=plain.public_key)):
        key = ring.resolve(ref, Scheme.BLS)
        assert key == plain and ring.history_key(key) == plain.public_key
    assert ring.history_key(share) == composite
    assert shares.asked == 0  # read at load, not per request
    assert ring.resolve(KeyRef(public_key=composite), Scheme.BLS) == share  # only a key not held asks
    assert shares.asked == 1
    shares.share = plain.public_key  # the shares changed: the next reload reads them again
    ring.reload_keys()
    assert ring.history_keys == {plain.public_key: composite}


def test_has_account_tells_a_loaded_name(module: EmulatedKeyModule) -> None:
    ring = KeyRing(module)
    assert ring.has_account("w/0")
    assert not ring.has_account("w/9")
