"""Check (and trim) what `sam build` made: runtime code and runtime dependencies only.

`sam build` installs functions/requirements.txt into each function's directory. Powertools'
tracer extra pulls in aws-xray-sdk, which pulls in botocore and its dependencies: the Lambda
Python runtime provides those, and a second, different botocore in the package would shadow the
runtime's and no longer match its boto3. `--prune` removes them before the check.

Usage: python scripts/check_package.py [--prune] .aws-sam/build
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import zipfile
from pathlib import Path

# Provided by the Lambda Python runtime (boto3 and what it depends on).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "python_dateutil", "six")
# Never in a Lambda package: the tests, the local-run tools and their emulators, installers' leftovers.
LOCAL_ONLY = ("tests", "runway_archiver", "moto", "bench", "scripts", "pytest", "_pytest", "bin", ".lock")
FORBIDDEN = (*LOCAL_ONLY, *RUNTIME_PROVIDED)


def top_level_name(entry: Path) -> str:
    """`botocore-1.2.dist-info` -> `botocore`; `six.py` -> `six`."""
    name = entry.name.removesuffix(".py")
    for suffix in (".dist-info", ".data"):
        if name.endswith(suffix):
            name = name.removesuffix(suffix).rsplit("-", 1)[0]
    return name.lower().replace("-", "_")


def prune(function_dir: Path) -> list[str]:
    removed = []
    for entry in sorted(function_dir.iterdir()):
        if top_level_name(entry) in RUNTIME_PROVIDED:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry.name)
    return removed


def zipped_size(function_dir: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(function_dir.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(function_dir).as_posix())
    return buffer.tell()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prune", action="store_true", help="remove runtime-provided packages first")
    parser.add_argument("build_dir", type=Path)
    args = parser.parse_args()
    functions = sorted(p for p in args.build_dir.iterdir() if p.is_dir())
    if not functions:
        print(f"check_package: no function directories in {args.build_dir}", file=sys.stderr)
        return 1
    problems = []
    for function_dir in functions:
        if args.prune:
            removed = prune(function_dir)
            if removed:
                print(f"{function_dir.name}: removed (runtime-provided) {' '.join(removed)}")
        if not (function_dir / "runway_archiver_lambda" / "handlers" / "poller.py").is_file():
            problems.append(f"{function_dir.name}: runway_archiver_lambda/handlers/poller.py is missing")
        present = {top_level_name(entry) for entry in function_dir.iterdir()}
        problems += [f"{function_dir.name}: holds {name}" for name in sorted(present & set(FORBIDDEN))]
        unpacked = sum(p.stat().st_size for p in function_dir.rglob("*") if p.is_file())
        zipped = zipped_size(function_dir)
        print(
            f"{function_dir.name}: {unpacked / 2**20:.1f} MiB unpacked, {zipped / 2**20:.1f} MiB zipped;"
            f" top level: {' '.join(sorted(present))}"
        )
    for problem in problems:
        print(f"check_package: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
