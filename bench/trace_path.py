"""The functions of the signer on the path of one request: python bench/trace_path.py [--json FILE]

Starts the signer in this process as ``signer serve --dev`` does (dev keys, dev PIN, plaintext on
loopback, SQLite store, the interceptor, the batcher, the parallel signer), sends one
SignBeaconAttestation to warm it up, then traces a second one with a profile hook
(``threading.setprofile``/``sys.setprofile``, installed before any server thread starts and
switched on only around the traced call) and counts the distinct functions (code objects) in
``signer/`` that ran, and their modules. Background threads (the readiness watcher, the metrics
server) are left out. Deterministic: fine to run on a loaded machine. Never run by pytest.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import signer  # noqa: E402
from signer.api._proto.v1 import eth2_pb2, responsestate_pb2, signer_pb2, signer_pb2_grpc  # noqa: E402
from signer.app import ServeOptions, SignerApp  # noqa: E402
from signer.cli import build_parser, serve_config_from_args  # noqa: E402
from signer.eth2.networks import network_from_config  # noqa: E402
from signer.eth2.signing import DomainType  # noqa: E402
from signer.keys.dev import create_dev_module  # noqa: E402

SIGNER_DIR = str(Path(signer.__file__).resolve().parent)
BACKGROUND_THREADS = ("readiness", "metrics")
ANONYMOUS = ("<listcomp>", "<genexpr>", "<dictcomp>", "<setcomp>", "<lambda>")
"""Code objects that are not functions one reads as steps of the path (counted apart)."""

_active = threading.Event()
_seen: dict[tuple[str, int, str], str] = {}
"""(file, first line, name) -> thread name, for every signer function called while active."""


def _profile(frame: FrameType, event: str, arg: object) -> None:
    if event != "call" or not _active.is_set():
        return
    code = frame.f_code
    if code.co_filename.startswith(SIGNER_DIR):
        _seen.setdefault((code.co_filename, code.co_firstlineno, code.co_qualname), threading.current_thread().name)


def _relative(filename: str) -> str:
    return Path(filename).relative_to(Path(SIGNER_DIR).parent).as_posix()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, help="write the functions found to this file")
    args = parser.parse_args()

    threading.setprofile(_profile)  # before the app starts any thread
    sys.setprofile(_profile)

    with tempfile.TemporaryDirectory(prefix="trace-path-") as tmp:
        serve = build_parser().parse_args(
            [
                "serve",
                "--dev",
                "--data-dir",
                tmp,
                "--grpc-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--audit-file",
                str(Path(tmp) / "audit.log"),
            ]
        )
        config = serve_config_from_args(serve)
        options = ServeOptions(dev=True, keys_created_by="bench/trace_path.py")
        options.key_module = create_dev_module(config.keys.data_dir, 1)
        app = SignerApp(config, options)
        app.start()
        network = network_from_config(config.network)
        channel = grpc.insecure_channel(f"127.0.0.1:{app.grpc.port}")
        stub = signer_pb2_grpc.SignerStub(channel)

        def attestation(target: int) -> signer_pb2.SignBeaconAttestationRequest:
            return signer_pb2.SignBeaconAttestationRequest(
                account="dev/0",
                domain=network.domain(DomainType.BEACON_ATTESTER, target),
                data=eth2_pb2.AttestationData(
                    slot=target * 32,
                    committee_index=0,
                    beacon_block_root=b"\x01" * 32,
                    source=eth2_pb2.Checkpoint(epoch=target - 1, root=b"\x02" * 32),
                    target=eth2_pb2.Checkpoint(epoch=target, root=b"\x03" * 32),
                ),
            )

        try:
            warm = stub.SignBeaconAttestation(attestation(1), timeout=30)
            traced_request = attestation(2)
            time.sleep(0.2)  # let the warm-up's metrics and audit settle
            _active.set()
            answer = stub.SignBeaconAttestation(traced_request, timeout=30)
            time.sleep(0.2)  # the interceptor's end-of-call work runs after the answer is sent
            _active.clear()
        finally:
            channel.close()
            app.stop()
    threading.setprofile(None)
    sys.setprofile(None)
    if warm.state != responsestate_pb2.SUCCEEDED or answer.state != responsestate_pb2.SUCCEEDED:
        print(f"the requests failed: {warm.state}, {answer.state}", file=sys.stderr)
        return 1

    every = {k: t for k, t in _seen.items() if not t.startswith(BACKGROUND_THREADS)}
    named = {k: t for k, t in every.items() if not any(a in k[2] for a in ANONYMOUS)}
    modules = Counter(_relative(f) for f, _, _ in named)
    result: dict[str, Any] = {
        "functions": len(named),
        "modules": len(modules),
        "with_comprehensions_and_lambdas": len(every),
        "in_the_request_thread": sum(1 for t in named.values() if t.startswith("grpc")),
        "per_module": dict(sorted(modules.items())),
        "threads": sorted(set(every.values())),
        "list": sorted(f"{_relative(f)}:{line} {name} [{t}]" for (f, line, name), t in every.items()),
    }
    print(
        f"one SignBeaconAttestation (dev mode): {result['functions']} functions in {result['modules']} modules "
        f"({result['in_the_request_thread']} in the request's thread; {result['with_comprehensions_and_lambdas']} "
        "counting comprehensions and lambdas)"
    )
    for module, count in result["per_module"].items():
        print(f"  {count:3d}  {module}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
