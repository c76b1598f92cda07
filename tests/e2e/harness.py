"""A real ``signer serve`` process for end-to-end tests.

``SignerProcess`` runs ``python -m signer serve ARGS`` as a subprocess, on port 0 for gRPC and for
metrics unless the arguments say otherwise, waits (bounded) for the JSON log line whose ``msg`` is
``"signer ready"`` and reads the ports from it. Two threads keep draining stderr (the JSON log) and
stdout (the audit log, by default) into buffers, so the server never blocks on a full pipe.

Typical use::

    proc = SignerProcess.dev(tmp_path / "data", dev_keys=8).start()
    with proc.channel() as channel:
        stub = signer_pb2_grpc.SignerStub(channel)
        ...
    proc.kill()          # SIGKILL: no clean-up at all
    proc.restart()       # same arguments, same data dir; NEW ports (port 0): open a new channel
    assert proc.terminate() == 0   # SIGTERM, then wait for the exit code

With a config file: ``SignerProcess.from_config(path)``; ``--grpc-listen``/``--metrics-listen`` flags
(port 0) still override the file's listeners. A server with keys signs only once its protection store
is initialized (issue 13.2): ``--dev`` does it when it creates its keys; for a config file whose keys
were made for the test, ``init_protection(path)`` runs the operator's command for keys that never
signed (``signer protection init --config PATH --keys-never-signed``) first. mTLS: pass
``credentials=`` (and, for a certificate whose name is not 127.0.0.1, ``target_name=``) to
``channel()``. Extra environment variables (a PIN,
``SOFTHSM2_CONF``) go in ``env=``; they are added to the test process's environment.

The same dev server on a SoftHSM2 token (keys.module = "pkcs11", same keys, names and PIN, through a
config file): ``SignerProcess.pkcs11_dev(data_dir, dev_keys=N)``; either one by name:
``SignerProcess.dev_on(module, data_dir, dev_keys=N)`` with ``module`` in ``KEY_MODULES``. The parts:
``create_softhsm_token``, ``seal_dev_keys``, ``write_pkcs11_config``.

Pytest fixtures: ``dev_signer`` (a started ``--dev`` server in ``tmp_path``, 4 BLS keys) and
``signer_process`` (a factory: ``signer_process(*args, env=..., ...)`` for any arguments; every
process it started is stopped at teardown). Import them into a test module with
``from tests.e2e.harness import dev_signer, signer_process  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import pytest

from tests.support import missing_component

READY_MSG = "signer ready"
DEFAULT_READY_TIMEOUT_S = 60.0
DEFAULT_STOP_TIMEOUT_S = 30.0
LOOPBACK = "127.0.0.1"


class SignerProcessError(RuntimeError):
    """The server did not start (or stop) as expected; the message carries its log."""


class SignerProcess:
    """One ``signer serve`` subprocess (see the module docstring).

    ``args`` are the arguments after ``serve``. ``--grpc-listen 127.0.0.1:0`` and
    ``--metrics-listen 127.0.0.1:0`` are appended unless ``args`` already name a listener.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
    ) -> None:
        self.args: list[str] = [str(a) for a in args]
        if "--grpc-listen" not in self.args:
            self.args += ["--grpc-listen", f"{LOOPBACK}:0"]
        if "--metrics-listen" not in self.args:
            self.args += ["--metrics-listen", f"{LOOPBACK}:0"]
        if "--dev" in self.args and "--http-listen" not in self.args:
            self.args += ["--http-listen", f"{LOOPBACK}:0"]  # --dev serves REST; never on the fixed 9000
        self.env = dict(env or {})
        self.cwd = cwd
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        """The parsed "signer ready" log record of the current run."""
        self.grpc_port = 0
        self.metrics_port = 0
        self.rest_port = 0
        """The REST front's port (0 when it is off)."""
        self.starts = 0
        self._lock = threading.Condition()
        self._stderr: list[str] = []
        self._stdout: list[str] = []
        self._readers: list[threading.Thread] = []
        self._channels: list[grpc.Channel] = []

    # --- constructors -------------------------------------------------------------------------

    @classmethod
    def dev(
        cls,
        data_dir: Path,
        *,
        dev_keys: int = 4,
        network: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> SignerProcess:
        """``serve --dev --data-dir DATA_DIR --dev-keys N [--network NAME] EXTRA_ARGS`` (not started)."""
        args = ["--dev", "--data-dir", str(data_dir), "--dev-keys", str(dev_keys)]
        if network is not None:
            args += ["--network", network]
        return cls([*args, *extra_args], env=env)

    @classmethod
    def from_config(
        cls, config: Path, *, extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None
    ) -> SignerProcess:
        """``serve --config CONFIG EXTRA_ARGS`` (not started)."""
        return cls(["--config", str(config), *extra_args], env=env)

    @classmethod
    def pkcs11_dev(
        cls,
        data_dir: Path,
        *,
        dev_keys: int = 4,
        network: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> SignerProcess:
        """The ``--dev`` server on a SoftHSM2 token, through a config file (not started).

        The same keys, names, PIN and chains as ``dev``: ``dev/0`` ... ``dev/{dev_keys-1}`` (BLS,
        sealed by the token) and the two CometBFT dev keys (inside the token), on a fresh token of
        its own whose user PIN is ``DEV_PIN`` (so AccountManager/Unlock takes the same passphrase),
        and the chains of ``signer.app.DEV_CHAINS``. Every client may do everything, as with
        ``--dev`` on loopback. The token lives next to ``data_dir`` (``<data_dir>.softhsm``); a
        missing SoftHSM fails under CI=true and skips elsewhere (``missing_component``).
        """
        token = create_softhsm_token(data_dir.with_name(data_dir.name + ".softhsm"))
        seal_dev_keys(token, data_dir, dev_keys)
        config = write_pkcs11_config(data_dir.with_name(data_dir.name + ".toml"), token, data_dir, network=network)
        init_protection(config, env=token.env)  # the keys were made for this server: never signed
        return cls.from_config(config, extra_args=extra_args, env={**token.env, **(env or {})})

    @classmethod
    def dev_on(
        cls,
        module: str,
        data_dir: Path,
        *,
        dev_keys: int = 4,
        network: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> SignerProcess:
        """``dev`` (module "emulated") or ``pkcs11_dev`` (module "pkcs11"): one of ``KEY_MODULES``."""
        if module == "emulated":
            return cls.dev(data_dir, dev_keys=dev_keys, network=network, extra_args=extra_args, env=env)
        if module == "pkcs11":
            return cls.pkcs11_dev(data_dir, dev_keys=dev_keys, network=network, extra_args=extra_args, env=env)
        raise ValueError(f"unknown key module {module!r}; expected one of {KEY_MODULES}")

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "signer", "serve", *self.args]

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise SignerProcessError("the signer is not running")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> SignerProcess:
        """Start the server and wait until it logs "signer ready" (at most ``ready_timeout_s``)."""
        if self.running:
            raise SignerProcessError("the signer is already running")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self._lock:
            self.ready = {}
            self._stderr.append(f"--- start {self.starts + 1}: {' '.join(self.command)}\n")
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self.cwd,
        )
        self.starts += 1
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stderr, self._stderr, True), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stdout, self._stdout, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + self.ready_timeout_s
        with self._lock:
            while not self.ready:
                if self.proc.poll() is not None and not self._readers[0].is_alive():
                    raise SignerProcessError(
                        f"signer exited with code {self.proc.returncode} before it was ready:\n{self.logs}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._kill_quietly()
                    raise SignerProcessError(f"signer not ready after {self.ready_timeout_s} s:\n{self.logs}")
                self._lock.wait(min(remaining, 0.2))
        self.grpc_port = int(self.ready["grpc_port"])
        self.metrics_port = int(self.ready["metrics_port"])
        self.rest_port = int(self.ready.get("http_port") or 0)
        return self

    def _drain(self, stream: IO[bytes], buffer: list[str], parse_ready: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self._lock:
                buffer.append(line)
                if parse_ready and not self.ready:
                    record = _json_record(line)
                    if record is not None and record.get("msg") == READY_MSG:
                        self.ready = record
                self._lock.notify_all()
        stream.close()
        with self._lock:
            self._lock.notify_all()

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)

    def _kill_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> int:
        """SIGKILL the server (no shutdown code runs) and return its exit code (-9).

        Open channels stay open (clients see the server die); ``restart``/``stop`` close them.
        """
        if self.proc is None:
            raise SignerProcessError("the signer was never started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait()
        self._join_readers()
        return code

    def send_sigterm(self) -> None:
        """Send SIGTERM without waiting (see ``wait``); ``terminate`` does both."""
        if self.proc is None or self.proc.poll() is not None:
            raise SignerProcessError("the signer is not running")
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> int:
        """Wait for the process to exit; return its exit code (SIGKILL and raise after ``timeout_s``)."""
        if self.proc is None:
            raise SignerProcessError("the signer was never started")
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._kill_quietly()
            self._join_readers()
            raise SignerProcessError(f"signer did not exit within {timeout_s} s:\n{self.logs}") from None
        self._join_readers()
        return code

    def terminate(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> int:
        """SIGTERM (graceful shutdown), wait for the exit, return the exit code (0 when graceful)."""
        if self.proc is None:
            raise SignerProcessError("the signer was never started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.wait(timeout_s)
        self.close_channels()
        return code

    def restart(self, *, kill: bool = False) -> SignerProcess:
        """Stop (SIGTERM, or SIGKILL with ``kill=True``) if running, then start with the same arguments.

        Ports are new after a restart on port 0: open new channels.
        """
        if self.running:
            if kill:
                self.kill()
            else:
                self.terminate()
        self.close_channels()
        return self.start()

    def stop(self) -> int | None:
        """Teardown: terminate if running (SIGKILL if it hangs); returns the exit code, if it ran."""
        self.close_channels()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                return self.terminate()
            except SignerProcessError:
                return self.proc.returncode
        return self.proc.returncode

    def __enter__(self) -> SignerProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- clients ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` of the gRPC listener of the current run."""
        if not self.grpc_port:
            raise SignerProcessError("the signer is not ready (no gRPC port yet)")
        return f"{LOOPBACK}:{self.grpc_port}"

    def channel(
        self,
        credentials: grpc.ChannelCredentials | None = None,
        *,
        target_name: str | None = None,
        options: Sequence[tuple[str, Any]] = (),
        ready_timeout_s: float = 10.0,
    ) -> grpc.Channel:
        """A channel to this run's gRPC port, connected (bounded wait); closed by kill/terminate/stop.

        ``credentials``: TLS (mTLS) channel credentials; ``target_name`` overrides the name the
        server certificate is checked against.
        """
        opts = list(options)
        if target_name is not None:
            opts.append(("grpc.ssl_target_name_override", target_name))
        if credentials is None:
            channel = grpc.insecure_channel(self.address, options=opts)
        else:
            channel = grpc.secure_channel(self.address, credentials, options=opts)
        if ready_timeout_s > 0:
            try:
                grpc.channel_ready_future(channel).result(timeout=ready_timeout_s)
            except grpc.FutureTimeoutError:
                channel.close()
                raise SignerProcessError(f"no gRPC connection to {self.address}:\n{self.logs}") from None
        self._channels.append(channel)
        return channel

    def close_channels(self) -> None:
        for channel in self._channels:
            with contextlib.suppress(Exception):
                channel.close()
        self._channels.clear()

    @property
    def http_url(self) -> str:
        """Base URL of the metrics/health listener: ``/metrics``, ``/healthz``, ``/readyz``."""
        if not self.metrics_port:
            raise SignerProcessError("the signer is not ready (no metrics port yet)")
        return f"http://{LOOPBACK}:{self.metrics_port}"

    @property
    def rest_url(self) -> str:
        """Base URL of the REST front (the Web3Signer API), plaintext: ``http://127.0.0.1:PORT``."""
        if not self.rest_port:
            raise SignerProcessError("the signer serves no REST front (server.http_listen unset) or is not ready")
        return f"http://{LOOPBACK}:{self.rest_port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.http_url}/metrics"

    # --- logs ---------------------------------------------------------------------------------

    @property
    def logs(self) -> str:
        """Everything the server wrote to stderr so far (all runs; each run starts with ``--- start``)."""
        with self._lock:
            return "".join(self._stderr)

    @property
    def stdout(self) -> str:
        """Everything the server wrote to stdout so far (the audit log with the default config)."""
        with self._lock:
            return "".join(self._stdout)

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log records on stderr so far (non-JSON lines are left out)."""
        records = (_json_record(line) for line in self.logs.splitlines())
        return [r for r in records if r is not None]

    def wait_for_log(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0) -> dict[str, Any]:
        """The first JSON log record for which ``predicate`` is true, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                for line in self._stderr:
                    record = _json_record(line)
                    if record is not None and predicate(record):
                        return record
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SignerProcessError(f"no matching log record within {timeout_s} s:\n{''.join(self._stderr)}")
                self._lock.wait(min(remaining, 0.2))


def _json_record(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def init_protection(config: Path, *, env: Mapping[str, str] | None = None) -> str:
    """``signer protection init --config CONFIG --keys-never-signed``, the real command an operator runs
    once for keys that have never signed; returns its output (SignerProcessError if it fails)."""
    done = subprocess.run(
        [sys.executable, "-m", "signer", "protection", "init", "--config", str(config), "--keys-never-signed"],
        env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SignerProcessError(f"signer protection init failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


# --- pytest fixtures ----------------------------------------------------------------------------


@pytest.fixture
def signer_process() -> Iterator[Callable[..., SignerProcess]]:
    """A factory: ``signer_process(*serve_args, env=None, start=True)``; all stopped at teardown."""
    started: list[SignerProcess] = []

    def make(*args: str | Path, env: Mapping[str, str] | None = None, start: bool = True) -> SignerProcess:
        proc = SignerProcess([str(a) for a in args], env=env)
        started.append(proc)
        return proc.start() if start else proc

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def dev_signer(tmp_path: Path) -> Iterator[SignerProcess]:
    """A started ``signer serve --dev`` (4 BLS dev keys, mainnet) with its data in ``tmp_path/signer``."""
    proc = SignerProcess.dev(tmp_path / "signer").start()
    try:
        yield proc
    finally:
        proc.stop()


# --- the dev keys on a SoftHSM2 token (keys.module = "pkcs11") ---------------------------------

KEY_MODULES = ("emulated", "pkcs11")
"""The key modules a dev server can run on (``SignerProcess.dev_on``)."""
DEV_HSM_LABEL = "dev"


@dataclass(frozen=True, slots=True)
class SoftHsmToken:
    """A SoftHSM2 token in a token directory of its own, seen only through ``conf_path``."""

    library_path: Path
    conf_path: Path
    label: str
    pin: str

    @property
    def env(self) -> dict[str, str]:
        """What a process needs in its environment to see this token (and no other)."""
        return {"SOFTHSM2_CONF": str(self.conf_path)}


def create_softhsm_token(root: Path, *, label: str = DEV_HSM_LABEL, pin: str | None = None) -> SoftHsmToken:
    """A fresh, empty token (user PIN ``pin``, default ``DEV_PIN``) under ``root`` with its own
    SOFTHSM2_CONF, made with softhsm2-util in a subprocess: the test process never loads SoftHSM
    for it (SoftHSM reads its configuration once per process; see tests.softhsm)."""
    from signer.keys.dev import DEV_PIN  # noqa: PLC0415
    from tests.softhsm import SO_PIN, find_library  # noqa: PLC0415

    util, library = shutil.which("softhsm2-util"), find_library()
    if util is None or library is None:
        missing_component("SoftHSM2 (apt: softhsm2): softhsm2-util and libsofthsm2.so")
    assert util is not None and library is not None
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n", encoding="utf-8"
    )
    token = SoftHsmToken(library, conf, label, DEV_PIN if pin is None else pin)
    subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", token.pin],
        env={**os.environ, **token.env}, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return token


_SEAL_DEV_KEYS = """
import os, sys
from pathlib import Path
from signer.keys import dev
from signer.keys.pkcs11 import Pkcs11KeyModule
from signer.types import Scheme

library, label, data_dir, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
items = [(dev.dev_account(i), Scheme.BLS, dev.dev_bls_secret(i)) for i in range(count)]
items.append((dev.DEV_SECP256K1_ACCOUNT, Scheme.SECP256K1, dev.dev_secp256k1_secret()))
items.append((dev.DEV_ED25519_ACCOUNT, Scheme.ED25519, dev.dev_ed25519_secret()))
data_dir.mkdir(parents=True, exist_ok=True)
module = Pkcs11KeyModule(Path(library), label, os.environ["DEV_TOKEN_PIN"], data_dir)
module.unlock()
try:
    for info in module.import_secrets(items):
        print(info.public_key_hex, info.name, info.scheme.value)
finally:
    module.close()
"""


def seal_dev_keys(token: SoftHsmToken, data_dir: Path, dev_keys: int) -> dict[str, bytes]:
    """Import the dev secrets (``signer.keys.dev``: ``dev/0`` ... and the two CometBFT keys) into a
    PKCS#11 module on ``token`` with ``Pkcs11KeyModule.import_secrets``, in a subprocess (``signer
    keys dev`` makes emulated modules only). Returns account name -> public key, as imported."""
    done = subprocess.run(
        [sys.executable, "-c", _SEAL_DEV_KEYS, str(token.library_path), token.label, str(data_dir), str(dev_keys)],
        env={**os.environ, **token.env, "DEV_TOKEN_PIN": token.pin},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SignerProcessError(f"sealing the dev keys into token {token.label!r} failed:\n{done.stderr}")
    keys: dict[str, bytes] = {}
    for line in done.stdout.splitlines():
        public_key, name, _scheme = line.split()
        keys[name] = bytes.fromhex(public_key.removeprefix("0x"))
    return keys


def write_pkcs11_config(path: Path, token: SoftHsmToken, data_dir: Path, *, network: str | None = None) -> Path:
    """The TOML of a dev-like server on ``token``: keys.module = "pkcs11" (PIN from a file next to
    ``path``), the ``DEV_CHAINS``, one client "local" (plaintext loopback) allowed everything."""
    from signer.app import DEV_CHAINS  # noqa: PLC0415
    from signer.config import ALL_OPERATIONS  # noqa: PLC0415

    pin_file = path.with_name(path.name + ".pin")
    pin_file.write_text(token.pin + "\n", encoding="utf-8")
    chains = "".join(
        f'\n[[cometbft.chains]]\nchain_id = "{chain_id}"\naccount = "{account}"\n'
        for chain_id, account in DEV_CHAINS.items()
    )
    operations = ", ".join(f'"{op}"' for op in ALL_OPERATIONS)
    path.write_text(
        f"""
[network]
name = "{network or "mainnet"}"

[keys]
module = "pkcs11"
data_dir = "{data_dir}"

[keys.pkcs11]
library_path = "{token.library_path}"
token_label = "{token.label}"
pin = {{ file = "{pin_file}" }}
{chains}
[[clients]]
name = "local"
allow_accounts = ["*"]
operations = [{operations}]
""",
        encoding="utf-8",
    )
    return path


# --- an independent reference for Ethereum requests (hashlib only; never signer.eth2) -----------

MAINNET_GENESIS_VALIDATORS_ROOT = bytes.fromhex("4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95")
MAINNET_GENESIS_FORK_VERSION = bytes.fromhex("00000000")
"""consensus-specs configs/mainnet.yaml; the root as in eth-clients/mainnet. Epochs below 74240
(altair) use the genesis fork version."""
SEPOLIA_GENESIS_VALIDATORS_ROOT = bytes.fromhex("d8ea171f3c94aea21ebc42a1ed61052acf3f9209c00e4efbaaddac09ed9b8078")
DOMAIN_BEACON_PROPOSER = bytes.fromhex("00000000")
DOMAIN_BEACON_ATTESTER = bytes.fromhex("01000000")
DOMAIN_RANDAO = bytes.fromhex("02000000")


def _sha256(data: bytes) -> bytes:
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(data).digest()


def _uint64_chunk(value: int) -> bytes:
    return value.to_bytes(8, "little") + b"\x00" * 24


def _merkleize(chunks: list[bytes]) -> bytes:
    width = 1
    while width < len(chunks):
        width *= 2
    layer = chunks + [b"\x00" * 32] * (width - len(chunks))
    while len(layer) > 1:
        layer = [_sha256(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def ref_checkpoint_root(epoch: int, root: bytes) -> bytes:
    return _merkleize([_uint64_chunk(epoch), root])


def ref_attestation_data_root(
    slot: int, index: int, beacon_block_root: bytes, source: tuple[int, bytes], target: tuple[int, bytes]
) -> bytes:
    """hash_tree_root(AttestationData) per the phase0 spec."""
    return _merkleize(
        [
            _uint64_chunk(slot),
            _uint64_chunk(index),
            beacon_block_root,
            ref_checkpoint_root(*source),
            ref_checkpoint_root(*target),
        ]
    )


def ref_block_header_root(
    slot: int, proposer_index: int, parent_root: bytes, state_root: bytes, body_root: bytes
) -> bytes:
    """hash_tree_root(BeaconBlockHeader) per the phase0 spec."""
    return _merkleize([_uint64_chunk(slot), _uint64_chunk(proposer_index), parent_root, state_root, body_root])


def ref_domain(
    domain_type: bytes,
    fork_version: bytes = MAINNET_GENESIS_FORK_VERSION,
    genesis_validators_root: bytes = MAINNET_GENESIS_VALIDATORS_ROOT,
) -> bytes:
    """compute_domain: domain_type || hash_tree_root(ForkData(fork_version, gvr))[:28]."""
    fork_data_root = _merkleize([fork_version + b"\x00" * 28, genesis_validators_root])
    return domain_type + fork_data_root[:28]


def ref_signing_root(object_root: bytes, domain: bytes) -> bytes:
    """compute_signing_root: hash_tree_root(SigningData(object_root, domain))."""
    return _sha256(object_root + domain)
