#!/usr/bin/env python3
"""Regenerate signer/api/_proto/ from proto/ with grpc_tools.protoc.

    python scripts/gen_proto.py              # rewrite signer/api/_proto in place
    python scripts/gen_proto.py --out DIR    # write the tree somewhere else
    python scripts/gen_proto.py --check      # exit 1 if the committed tree is stale

For every .proto under proto/ this writes <name>_pb2.py and <name>_pb2.pyi (typed stubs, from
protoc's --pyi_out); for every .proto that defines a service also <name>_pb2_grpc.py and its typed
stub <name>_pb2_grpc.pyi (mypy-protobuf's protoc-gen-mypy_grpc plugin, so that servicers and stubs
type-check under mypy --strict); and an __init__.py in every directory so that the output is a
regular package tree. protoc emits absolute imports named after
the proto directories (``from v1 import eth2_pb2``, ``from tendermint.types import types_pb2``),
which would resolve against sys.path (and ``signer.admin.v1`` would even hit our own top-level
package). They are rewritten to relative imports inside ``signer.api._proto``. Imports of
modules that do not come from proto/ (``google.protobuf``, ``grpc``) stay as they are.

The output is a pure function of the .proto files and the versions of grpcio-tools (which bundles
protoc and fixes the generated runtime-version checks) and mypy-protobuf. Both are pinned exactly
in pyproject.toml (dev extra) and in PINNED_TOOLS below. To bump one:
  1. change its pin in pyproject.toml and in PINNED_TOOLS, then ``pip install -e '.[dev]'``;
  2. run ``python scripts/gen_proto.py`` and commit the regenerated signer/api/_proto/;
  3. make sure the runtime floors in pyproject.toml still hold: the generated *_pb2_grpc.py
     refuse to import under a grpcio older than X.Y.Z, and *_pb2.py under a protobuf runtime
     older than the one protoc was built for (see ``ValidateProtobufRuntimeVersion``).
tests/unit/test_proto_generated.py fails until the committed tree matches the pinned tool.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
OUTPUT_DIR = REPO_ROOT / "signer" / "api" / "_proto"

PINNED_TOOLS = {"grpcio-tools": "1.85.1", "mypy-protobuf": "5.1.0"}

INIT_DOCSTRING = '"""Generated from proto/ by scripts/gen_proto.py. Do not edit."""\n'

# protoc's import lines for generated modules: "from a.b import c_pb2 as x" or "import c_pb2 as x".
_FROM_IMPORT = re.compile(r"^from (?P<package>[\w.]+) import (?P<module>\w+_pb2)(?P<rest>\b.*)$")
_PLAIN_IMPORT = re.compile(r"^import (?P<module>\w+_pb2)(?P<rest>\b.*)$")
_DEFINES_CLASS = re.compile(r"^class ", re.MULTILINE)


def proto_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """Every .proto under proto_root, as sorted POSIX paths relative to it."""
    return sorted(path.relative_to(proto_root).as_posix() for path in proto_root.rglob("*.proto"))


def _grpc_tools_include() -> Path:
    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def _relative_import(from_dir: tuple[str, ...], target_dir: tuple[str, ...]) -> str:
    """The relative package reference from a module in from_dir to a module in target_dir."""
    common = 0
    while common < min(len(from_dir), len(target_dir)) and from_dir[common] == target_dir[common]:
        common += 1
    dots = "." * (len(from_dir) - common + 1)
    return dots + ".".join(target_dir[common:])


def _rewrite_imports(path: Path, out_dir: Path, proto_dirs: set[tuple[str, ...]]) -> None:
    """Turn protoc's absolute imports of our own generated modules into relative imports."""
    from_dir = path.parent.relative_to(out_dir).parts
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = False
    for number, line in enumerate(lines):
        body = line.rstrip("\n")
        match = _FROM_IMPORT.match(body)
        if match is not None:
            target_dir = tuple(match["package"].split("."))
            if target_dir not in proto_dirs:
                continue  # google.protobuf and other third-party modules
            package = _relative_import(from_dir, target_dir)
        else:
            match = _PLAIN_IMPORT.match(body)
            if match is None:
                continue
            target_dir = ()
            if target_dir not in proto_dirs:
                raise RuntimeError(f"{path}: cannot place top-level import {body!r}")
            package = _relative_import(from_dir, target_dir)
        lines[number] = f"from {package} import {match['module']}{match['rest']}\n"
        changed = True
    if changed:
        path.write_text("".join(lines), encoding="utf-8")


def _check_tool_versions() -> None:
    for distribution, pinned in PINNED_TOOLS.items():
        installed = importlib.metadata.version(distribution)
        if installed != pinned:
            raise SystemExit(
                f"{distribution} {installed} is installed but the generated code is pinned to "
                f"{pinned}; install the pinned version (pip install -e '.[dev]') "
                "or bump the pin as described at the top of scripts/gen_proto.py"
            )


def _mypy_grpc_plugin() -> Path:
    """protoc-gen-mypy_grpc from the running interpreter's environment (mypy-protobuf)."""
    beside_python = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    if beside_python.is_file():
        return beside_python
    on_path = shutil.which("protoc-gen-mypy_grpc")
    if on_path is None:
        raise SystemExit("protoc-gen-mypy_grpc not found: pip install -e '.[dev]' (mypy-protobuf)")
    return Path(on_path)


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:  # noqa: C901 -- one protoc run and its post-processing steps, in order
    """Generate the whole tree into out_dir (which must be empty or absent); return its files."""
    _check_tool_versions()
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty")
    sources = proto_files(proto_root)
    if not sources:
        raise ValueError(f"no .proto files under {proto_root}")
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "--proto_path=.",
        f"--proto_path={_grpc_tools_include()}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy_grpc={_mypy_grpc_plugin()}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    # Run from proto_root with relative paths: the file names protoc records in the descriptors
    # ("v1/signer.proto") must not depend on where the repository is checked out.
    result = subprocess.run(command, cwd=proto_root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed ({result.returncode}):\n{result.stderr}")

    # protoc writes a *_pb2_grpc.py(i) for every file; keep only those that define a service.
    for path in sorted(out_dir.rglob("*_pb2_grpc.py")):
        if not _DEFINES_CLASS.search(path.read_text(encoding="utf-8")):
            path.unlink()
            path.with_suffix(".pyi").unlink(missing_ok=True)

    proto_dirs = {tuple(Path(source).parent.parts) for source in sources}
    for path in sorted(out_dir.rglob("*.py*")):
        if path.suffix in {".py", ".pyi"}:
            _rewrite_imports(path, out_dir, proto_dirs)

    package_dirs = {out_dir}
    for path in out_dir.rglob("*"):
        if path.is_file():
            parent = path.parent
            while parent != out_dir:
                package_dirs.add(parent)
                parent = parent.parent
    for directory in package_dirs:
        (directory / "__init__.py").write_text(INIT_DOCSTRING, encoding="utf-8")
    return sorted(path for path in out_dir.rglob("*") if path.is_file())


def _tree(root: Path) -> dict[str, Path]:
    return {
        path.relative_to(root).as_posix(): path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def differences(expected_root: Path, actual_root: Path) -> list[str]:
    """Relative paths that are missing, extra, or differ between two generated trees."""
    expected, actual = _tree(expected_root), _tree(actual_root)
    problems = [f"missing: {name}" for name in sorted(expected.keys() - actual.keys())]
    problems += [f"unexpected: {name}" for name in sorted(actual.keys() - expected.keys())]
    problems += [
        f"differs: {name}"
        for name in sorted(expected.keys() & actual.keys())
        if not filecmp.cmp(expected[name], actual[name], shallow=False)
    ]
    return problems


def _replace_tree(fresh: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(fresh, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the generated tree here instead")
    parser.add_argument("--check", action="store_true", help="only compare with the committed tree")
    args = parser.parse_args(argv)

    if args.out is not None:
        generate(args.out.resolve())
        return 0
    with tempfile.TemporaryDirectory(prefix="gen_proto_") as scratch:
        fresh = Path(scratch) / "_proto"
        generate(fresh)
        problems = differences(fresh, OUTPUT_DIR)
        if args.check:
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
        if problems:
            _replace_tree(fresh, OUTPUT_DIR)
        print(f"{OUTPUT_DIR.relative_to(REPO_ROOT)}: {len(problems)} file(s) updated")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
