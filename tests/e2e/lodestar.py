"""A real Lodestar (1.5.1) single-node dev chain whose validator client signs through an external
Web3Signer-API signer, for end-to-end tests of the REST front.

Lodestar comes from ``scripts/install-lodestar.sh`` (``npm ci`` of tests/e2e/lodestar/ into
``.tools/lodestar``; the only Lodestar the npm registry here serves completely). Facts this module
relies on (measured; shared notes/lodestar.md):

* ``lodestar dev`` (no ``--startValidators``) is a beacon node only, minimal preset (8 slots per
  epoch), interop genesis ``--genesisValidators N`` about 5 s after start, no peers. It writes
  ``genesis.ssz`` into its current directory, so every process runs in ``workdir``.
* The validator client (``lodestar validator --network dev``) must get exactly the same
  ``--params.*`` as the beacon node (it compares ``/eth/v1/config/spec``), and ``--server`` must
  name the beacon node's ``--rest.port``.
* Lodestar's CLI turns every ``LODESTAR_*`` environment variable into a flag: they are removed.
* bellatrix/capella run pre-merge only with activation epoch >= 1 (default schedule: altair 0,
  bellatrix 1, capella 2). With 1 s slots the chain finalizes epoch >= 3 in about 40-70 s.
* Every socket is bound to 127.0.0.1 (libp2p TCP+UDP, REST), plus the signer's.
* The validator client sends ``Connection: close`` and needs a JSON ``{"signature": ...}`` answer
  with that header echoed; ``fork_info.fork.epoch`` is the message's epoch.

Typical use (the signer must be running before ``start_validator`` when keys are fetched)::

    chain = LodestarDevnet(tmp_path / "chain", seconds_per_slot=1)
    chain.start_beacon()                       # waits for the genesis endpoint
    network_toml = chain.network_config()      # the signer's [network] table
    ...start the signer with it, import chain.interop_secrets() ...
    chain.start_validator("http://127.0.0.1:PORT")
    chain.wait_finalized(3, timeout_s=150)
    chain.stop()                               # SIGTERM (then SIGKILL) to its own processes only
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from signer.crypto import bls
from tests.support import REPO_ROOT, missing_component

LODESTAR_DIR = REPO_ROOT / ".tools" / "lodestar"
LODESTAR_BIN = LODESTAR_DIR / "node_modules" / ".bin" / "lodestar"
LOOPBACK = "127.0.0.1"
CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
FAR_FUTURE_EPOCH = 2**64 - 1
FORKS = ("altair", "bellatrix", "capella", "deneb", "electra", "fulu")
"""Our fork names, in order; Lodestar's spec keys are <NAME>_FORK_VERSION / <NAME>_FORK_EPOCH."""
DEFAULT_SCHEDULE: Mapping[str, int] = {"altair": 0, "bellatrix": 1, "capella": 2}


def lodestar_binary() -> Path:
    """The installed Lodestar, or fail (CI) / skip (elsewhere) naming the install script."""
    if not os.access(LODESTAR_BIN, os.X_OK):
        missing_component(f"Lodestar at {LODESTAR_BIN} (run scripts/install-lodestar.sh)")
    return LODESTAR_BIN


def interop_secret(index: int) -> bytes:
    """Lodestar's interop secret key ``index`` (big-endian 32 bytes): sha256 of the little-endian
    index, read little-endian, mod r."""
    digest = hashlib.sha256(index.to_bytes(32, "little")).digest()
    return (int.from_bytes(digest, "little") % CURVE_ORDER).to_bytes(32, "big")


def interop_secrets(count: int) -> list[bytes]:
    return [interop_secret(i) for i in range(count)]


def interop_public_keys(count: int) -> list[bytes]:
    return [bls.secret_to_public(s) for s in interop_secrets(count)]


def free_port() -> int:
    """A TCP and UDP port free on 127.0.0.1 right now (libp2p binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free TCP+UDP port on 127.0.0.1")


def network_from_spec(
    spec: Mapping[str, str], genesis_validators_root: str, name: str = "lodestar-dev"
) -> dict[str, Any]:
    """The signer's ``[network]`` table for a chain whose ``/eth/v1/config/spec`` is ``spec``.

    Forks are taken in order while scheduled (an epoch below FAR_FUTURE_EPOCH) and named; the config's
    GENESIS_FORK_VERSION is the genesis version (not the genesis state's, which is altair's with
    altair at epoch 0).
    """
    forks = []
    for fork in FORKS:
        epoch = spec.get(f"{fork.upper()}_FORK_EPOCH")
        if epoch is None or int(epoch) >= FAR_FUTURE_EPOCH:
            break
        forks.append({"name": fork, "epoch": int(epoch), "version": spec[f"{fork.upper()}_FORK_VERSION"].lower()})
    return {
        "name": name,
        "genesis_validators_root": genesis_validators_root.lower(),
        "genesis_fork_version": spec["GENESIS_FORK_VERSION"].lower(),
        "slots_per_epoch": int(spec["SLOTS_PER_EPOCH"]),
        "forks": forks,
    }


def network_toml(network: Mapping[str, Any]) -> str:
    """``network_from_spec``'s table as TOML text (a ``[network]`` section)."""
    forks = ", ".join(
        f'{{ name = "{f["name"]}", epoch = {f["epoch"]}, version = "{f["version"]}" }}' for f in network["forks"]
    )
    return (
        "[network]\n"
        f'name = "{network["name"]}"\n'
        f'genesis_validators_root = "{network["genesis_validators_root"]}"\n'
        f'genesis_fork_version = "{network["genesis_fork_version"]}"\n'
        f"slots_per_epoch = {network['slots_per_epoch']}\n"
        f"forks = [{forks}]\n"
    )


@dataclass(frozen=True, slots=True)
class Finality:
    head_slot: int
    justified_epoch: int
    finalized_epoch: int


class LodestarError(RuntimeError):
    """A Lodestar process did not start or the chain did not progress; carries the log tails."""


class LodestarDevnet:
    """One beacon node (``lodestar dev``) and one validator client with an external signer."""

    def __init__(
        self,
        workdir: Path,
        *,
        validators: int = 8,
        seconds_per_slot: int = 1,
        schedule: Mapping[str, int] = DEFAULT_SCHEDULE,
        extra_beacon_args: Sequence[str] = (),
        extra_validator_args: Sequence[str] = (),
    ) -> None:
        self.binary = lodestar_binary()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.validators = validators
        self.params = ["--params.SECONDS_PER_SLOT", str(seconds_per_slot)]
        for fork, epoch in schedule.items():
            self.params += [f"--params.{fork.upper()}_FORK_EPOCH", str(epoch)]
        self.rest_port = free_port()
        self.p2p_port = free_port()
        self.extra_beacon_args = list(extra_beacon_args)
        self.extra_validator_args = list(extra_validator_args)
        self.beacon: subprocess.Popen[bytes] | None = None
        self.validator: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    # --- processes -------------------------------------------------------------------------------

    @property
    def beacon_url(self) -> str:
        return f"http://{LOOPBACK}:{self.rest_port}"

    @property
    def beacon_log(self) -> Path:
        return self.workdir / "beacon.log"

    @property
    def validator_log(self) -> Path:
        return self.workdir / "validator.log"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LODESTAR_")}
        env["NODE_NO_WARNINGS"] = "1"
        return env

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        out = log.open("ab")
        self._logs.append(out)
        return subprocess.Popen(
            [str(self.binary), *args],
            cwd=self.workdir,  # genesis.ssz lands here
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals only what we started
        )

    def start_beacon(self, timeout_s: float = 90.0) -> None:
        """Start the beacon node and wait until its genesis endpoint answers."""
        args = [
            "dev",
            "--genesisValidators", str(self.validators),
            "--dataDir", str(self.workdir / "beacon"),
            *self.params,
            "--listenAddress", LOOPBACK,
            "--port", str(self.p2p_port),
            "--discv5", "false",
            "--rest.address", LOOPBACK,
            "--rest.port", str(self.rest_port),
            "--logFile", "none",
            *self.extra_beacon_args,
        ]  # fmt: skip
        self.beacon = self._spawn(args, self.beacon_log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.beacon.poll() is not None:
                raise LodestarError(f"beacon node exited with {self.beacon.returncode}:\n{self.tail(self.beacon_log)}")
            with contextlib.suppress(OSError, LodestarError):
                self.get("/eth/v1/beacon/genesis")
                return
            time.sleep(0.5)
        raise LodestarError(f"beacon node gave no genesis in {timeout_s} s:\n{self.tail(self.beacon_log)}")

    def start_validator(self, signer_url: str, public_keys: Sequence[bytes] | None = None) -> None:
        """Start the validator client with every signature going to ``signer_url``. Without
        ``public_keys`` it asks the signer (``GET /api/v1/eth2/publicKeys``) at start-up."""
        keys = (
            ["--externalSigner.fetch"]
            if public_keys is None
            else ["--externalSigner.pubkeys", ",".join("0x" + k.hex() for k in public_keys)]
        )
        args = [
            "validator",
            "--network", "dev",
            *self.params,
            "--dataDir", str(self.workdir / "validator"),
            "--server", self.beacon_url,
            "--externalSigner.url", signer_url,
            *keys,
            "--logFile", "none",
            *self.extra_validator_args,
        ]  # fmt: skip
        self.validator = self._spawn(args, self.validator_log)

    def stop_validator(self, timeout_s: float = 20.0) -> None:
        if self.validator is not None:
            self._stop(self.validator, timeout_s)
            self.validator = None

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the validator client, then the beacon node (SIGKILL after ``timeout_s``)."""
        self.stop_validator(timeout_s)
        if self.beacon is not None:
            self._stop(self.beacon, timeout_s)
            self.beacon = None
        for log in self._logs:
            log.close()
        self._logs.clear()

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)

    def __enter__(self) -> LodestarDevnet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the beacon API --------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        """GET ``path`` from the beacon node's REST API; the JSON ``data`` member."""
        try:
            with urllib.request.urlopen(self.beacon_url + path, timeout=10) as response:  # noqa: S310 - loopback URL
                return json.loads(response.read())["data"]
        except urllib.error.HTTPError as exc:
            raise LodestarError(f"GET {path}: HTTP {exc.code}") from exc

    def spec(self) -> dict[str, str]:
        return dict(self.get("/eth/v1/config/spec"))

    def genesis_validators_root(self) -> str:
        return str(self.get("/eth/v1/beacon/genesis")["genesis_validators_root"])

    def network_config(self, name: str = "lodestar-dev") -> dict[str, Any]:
        """The signer's ``[network]`` table for this chain (see ``network_from_spec``)."""
        return network_from_spec(self.spec(), self.genesis_validators_root(), name)

    def fork_schedule(self) -> list[dict[str, str]]:
        return list(self.get("/eth/v1/config/fork_schedule"))

    def finality(self) -> Finality:
        head = self.get("/eth/v1/beacon/headers/head")
        checkpoints = self.get("/eth/v1/beacon/states/head/finality_checkpoints")
        return Finality(
            head_slot=int(head["header"]["message"]["slot"]),
            justified_epoch=int(checkpoints["current_justified"]["epoch"]),
            finalized_epoch=int(checkpoints["finalized"]["epoch"]),
        )

    def block_header(self, slot: int) -> dict[str, Any] | None:
        """The canonical block header at ``slot`` (None for an empty slot)."""
        try:
            header = self.get(f"/eth/v1/beacon/headers/{slot}")
        except LodestarError:
            return None
        return dict(header["header"]["message"])

    def wait_finalized(self, epoch: int, timeout_s: float) -> Finality:
        """Poll until the finalized epoch reaches ``epoch``; LodestarError (with log tails) on timeout
        or when a process died."""
        deadline = time.monotonic() + timeout_s
        last: Finality | None = None
        while time.monotonic() < deadline:
            for proc, log in ((self.beacon, self.beacon_log), (self.validator, self.validator_log)):
                if proc is not None and proc.poll() is not None:
                    raise LodestarError(f"{log.name}: exited with {proc.returncode}:\n{self.tail(log)}")
            with contextlib.suppress(OSError, LodestarError, KeyError):
                last = self.finality()
                if last.finalized_epoch >= epoch:
                    return last
            time.sleep(1.0)
        raise LodestarError(
            f"finalized epoch {epoch} not reached in {timeout_s} s (last {last}):\n"
            f"--- validator\n{self.tail(self.validator_log)}\n--- beacon\n{self.tail(self.beacon_log)}"
        )

    @staticmethod
    def tail(log: Path, lines: int = 40) -> str:
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def validator_errors(self) -> list[str]:
        """The validator client's error lines (Lodestar logs ``error:`` per failed duty or request)."""
        text = self.validator_log.read_text(errors="replace") if self.validator_log.exists() else ""
        return [line for line in text.splitlines() if " error: " in line.lower() or "[error]" in line.lower()]
