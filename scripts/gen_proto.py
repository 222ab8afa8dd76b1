"""Regenerate the protobuf/gRPC code under src/gridrun/_proto from proto/.

protoc names generated modules after the proto path (``gridrun/v1/worker_pb2``), whose absolute
imports would clash with our own ``gridrun`` package; this script flattens them into
``gridrun._proto`` and rewrites those imports as relative ones.

Usage: python scripts/gen_proto.py [OUTPUT_DIR]   (default: src/gridrun/_proto)
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ["gridrun/v1/worker.proto", "core/node.proto"]


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *PROTOS,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        for generated in sorted(Path(tmp).rglob("*.py*")):
            text = generated.read_text()
            # "from gridrun.v1 import worker_pb2 as ..." -> "from . import worker_pb2 as ..."
            text = re.sub(r"^from [\w.]+ import (\w+_pb2)", r"from . import \1", text, flags=re.M)
            (out_dir / generated.name).write_text(text)
    init = out_dir / "__init__.py"
    init.write_text('"""Generated protobuf and gRPC code (scripts/gen_proto.py). Do not edit."""\n')


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "src" / "gridrun" / "_proto"
    if target.exists() and target.name == "_proto":
        shutil.rmtree(target)
    generate(target)
