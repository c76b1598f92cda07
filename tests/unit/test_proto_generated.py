"""The committed signer/api/_proto/ is exactly what scripts/gen_proto.py generates from proto/."""

from __future__ import annotations

import filecmp
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gen_proto.py"
COMMITTED = REPO_ROOT / "signer" / "api" / "_proto"
PROTO_ROOT = REPO_ROOT / "proto"

# Absolute imports protoc would emit for our own proto directories; none may survive.
_OWN_ABSOLUTE_IMPORT = re.compile(r"^(from (v1|tendermint|signer)[\w.]* import \w+_pb2|import \w+_pb2)\b", re.M)


def _tree(root: Path) -> dict[str, Path]:
    return {
        path.relative_to(root).as_posix(): path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regen") / "_proto"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return out


def test_regenerating_gives_the_same_file_set(regenerated: Path) -> None:
    assert sorted(_tree(regenerated)) == sorted(_tree(COMMITTED))


def test_regenerating_gives_byte_identical_files(regenerated: Path) -> None:
    fresh, committed = _tree(regenerated), _tree(COMMITTED)
    differing = [
        name
        for name in sorted(fresh.keys() & committed.keys())
        if not filecmp.cmp(fresh[name], committed[name], shallow=False)
    ]
    assert differing == [], "stale generated code; run: python scripts/gen_proto.py"


def test_every_proto_has_a_module_and_a_stub() -> None:
    committed = _tree(COMMITTED)
    for proto in sorted(PROTO_ROOT.rglob("*.proto")):
        stem = proto.relative_to(PROTO_ROOT).with_suffix("").as_posix()
        assert f"{stem}_pb2.py" in committed, stem
        assert f"{stem}_pb2.pyi" in committed, stem


def test_services_and_only_services_get_grpc_modules() -> None:
    for proto in sorted(PROTO_ROOT.rglob("*.proto")):
        has_service = re.search(r"^service \w+", proto.read_text(encoding="utf-8"), re.M) is not None
        module = COMMITTED / proto.relative_to(PROTO_ROOT).with_name(f"{proto.stem}_pb2_grpc.py")
        assert module.is_file() == has_service, module
        assert module.with_suffix(".pyi").is_file() == has_service, module


def test_generated_code_imports_its_siblings_relatively() -> None:
    offenders = [
        name
        for name, path in _tree(COMMITTED).items()
        if path.suffix in {".py", ".pyi"} and _OWN_ABSOLUTE_IMPORT.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_check_mode_passes_on_the_committed_tree() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("distribution", ["grpcio-tools", "mypy-protobuf"])
def test_generator_pin_matches_the_script_and_the_installation(distribution: str) -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    pins = [req.split("==", 1)[1] for req in dev if req.split("=", 1)[0] == distribution]
    script = SCRIPT.read_text(encoding="utf-8")
    script_pin = re.search(rf'"{distribution}": "([^"]+)"', script)
    assert script_pin is not None
    assert pins == [script_pin[1]]
    assert importlib.metadata.version(distribution) == script_pin[1]


_TYPED_USAGE = """
from __future__ import annotations

from concurrent import futures

import grpc

from signer.api._proto.tendermint.privval import service_pb2_grpc, types_pb2
from signer.api._proto.v1 import signer_pb2, signer_pb2_grpc


class PrivVal(service_pb2_grpc.PrivValidatorAPIServicer):
    def GetPubKey(
        self, request: types_pb2.PubKeyRequest, context: grpc.ServicerContext
    ) -> types_pb2.PubKeyResponse:
        return types_pb2.PubKeyResponse()

    def SignVote(
        self, request: types_pb2.SignVoteRequest, context: grpc.ServicerContext
    ) -> types_pb2.SignedVoteResponse:
        return types_pb2.SignedVoteResponse(vote=request.vote)

    def SignProposal(
        self, request: types_pb2.SignProposalRequest, context: grpc.ServicerContext
    ) -> types_pb2.SignedProposalResponse:
        return types_pb2.SignedProposalResponse(proposal=request.proposal)


def serve() -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    service_pb2_grpc.add_PrivValidatorAPIServicer_to_server(PrivVal(), server)
    return server


def signature(channel: grpc.Channel) -> bytes:
    response = signer_pb2_grpc.SignerStub(channel).Sign(signer_pb2.SignRequest(account="w/a"))
    return RESULT
"""


@pytest.mark.parametrize(
    ("result", "passes"),
    [("response.signature", True), ("response.state", False)],
    ids=["typed-usage-passes", "type-error-is-caught"],
)
@pytest.mark.slow  # runs mypy
def test_generated_stubs_type_check_under_strict_mypy(tmp_path: Path, result: str, passes: bool) -> None:
    usage = tmp_path / "usage.py"
    usage.write_text(_TYPED_USAGE.replace("RESULT", result), encoding="utf-8")
    outcome = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(REPO_ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            str(usage),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (outcome.returncode == 0) == passes, outcome.stdout
