"""Package the functions as `sam build` would, without the runtime's interpreter on this machine.

`sam build` refuses to build for python3.13 unless a python3.13 is on PATH. This does the same
job without one: the requirements are installed as binary wheels for the Lambda platform
(manylinux2014, aarch64, CPython 3.13) with uv, the code is copied beside them, and a built
template pointing each function at its directory is written, so `sam deploy` takes it as it
takes `sam build`'s output.

Usage: python scripts/package_lambda.py [--python-version 3.13] OUT_DIR   (e.g. .aws-sam/build)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from runway_archiver.local.deploy import load_template
from runway_archiver.local.engines import REPO_ROOT

PLATFORMS = {"arm64": "aarch64-manylinux2014", "x86_64": "x86_64-manylinux2014"}


def install_requirements(target: Path, python_version: str, architecture: str) -> None:
    uv = Path(sys.executable).with_name("uv")
    subprocess.run(  # noqa: S603 - the project's own uv, fixed arguments
        [
            str(uv),
            "pip",
            "install",
            "--quiet",
            "--target",
            str(target),
            "--python-version",
            python_version,
            "--python-platform",
            PLATFORMS[architecture],
            "--only-binary",
            ":all:",
            "--requirement",
            str(REPO_ROOT / "functions" / "requirements.txt"),
        ],
        check=True,
    )
    # uv's bookkeeping and console scripts: nothing a Lambda function imports.
    (target / ".lock").unlink(missing_ok=True)
    shutil.rmtree(target / "bin", ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default="3.13")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    template = load_template()
    architecture = template["Globals"]["Function"]["Architectures"][0]
    functions = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"]
    with tempfile.TemporaryDirectory() as scratch:
        dependencies = Path(scratch) / "dependencies"
        install_requirements(dependencies, args.python_version, architecture)
        shutil.rmtree(args.out_dir, ignore_errors=True)
        for function in functions:
            function_dir = args.out_dir / function
            shutil.copytree(dependencies, function_dir)
            shutil.copytree(
                REPO_ROOT / "functions" / "runway_archiver_lambda",
                function_dir / "runway_archiver_lambda",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            template["Resources"][function]["Properties"]["CodeUri"] = function
    (args.out_dir / "template.yaml").write_text(yaml.safe_dump(template, sort_keys=False))
    print(f"packaged {', '.join(functions)} into {args.out_dir} (python{args.python_version}, {architecture})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
