"""The artefact that ships is the artefact tested: the poller, the callback function and the worker run from
what `make build` produced (.aws-sam/build/<Function>/), each invocation in a fresh Python 3.13
process that sees only the standard library, the function's folder and the Lambda runtime's boto3
(pinned in runtime-requirements.txt, installed by `make lambda-runtime`), against moto_server in a
process of its own and the feed emulator, both on loopback.

A dependency missing from functions/requirements.txt fails the import here as it would in Lambda
(Runtime.ImportModuleError); code that needs a newer botocore than the runtime's fails its call.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from runway_archiver.local.deploy import deploy, load_template
from runway_archiver.local.emulator import FeedEmulator, media_sha256
from runway_archiver.local.engines import FAKE_CREDENTIALS, DynamoDBLocal, MotoServer
from runway_archiver_lambda.clock import iso_utc
from tests.artefact.lambda_bootstrap import RESULT_MARK, SDK_MARK
from tests.support.archive import Archive, subscribed_archive
from tests.support.samples import API_KEY, load_event

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / ".aws-sam" / "build"
PACKAGE = REPO / "functions" / "runway_archiver_lambda"
RUNTIME = REPO / ".tools" / "lambda-runtime-python3.13"
REQUIREMENTS = Path(__file__).with_name("runtime-requirements.txt")
BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
FUNCTIONS = ("PollerFunction", "WorkerFunction", "IntakeFunction")
MULTIPART_VIDEO = 9 * 1024 * 1024  # two parts of the 8 MiB part size


def _is_python313(candidate: str) -> bool:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = subprocess.run(
            [candidate, "-I", "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return probe.stdout.strip() == "True"
    return False


def find_python313() -> str | None:
    """A CPython 3.13: $LAMBDA_PYTHON, pyenv's builds, one uv knows, or python3.13 on PATH."""
    candidates = [os.environ.get("LAMBDA_PYTHON", "")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv_root.glob("versions/3.13.*/bin/python3.13"), reverse=True)]
    uv = REPO / ".venv" / "bin" / "uv"
    if uv.exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = subprocess.run(
                [str(uv), "python", "find", "3.13"], check=False, capture_output=True, text=True, timeout=30
            )
            candidates.append(found.stdout.strip())
    candidates.append(shutil.which("python3.13") or "")
    return next((c for c in candidates if c and _is_python313(c)), None)


def pinned_versions() -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines())
    return dict(line.split("==") for line in lines if line)


@dataclass(frozen=True)
class BuiltFunction:
    logical_id: str
    directory: Path
    handler: str
    timeout: int


def built_functions() -> dict[str, BuiltFunction]:
    """The functions of the built template (.aws-sam/build/template.yaml), checked to be current."""
    if not (BUILD / "template.yaml").is_file():
        pytest.fail(f"no built artefact in {BUILD}: run `make build` first")
    template = load_template(BUILD / "template.yaml")
    default_timeout = int(template.get("Globals", {}).get("Function", {}).get("Timeout", 3))
    found = {}
    for logical_id in FUNCTIONS:
        properties = template["Resources"][logical_id]["Properties"]
        directory = BUILD / properties["CodeUri"]
        stale = [
            str(source.relative_to(PACKAGE.parent))
            for source in PACKAGE.rglob("*.py")
            if not (directory / source.relative_to(PACKAGE.parent)).is_file()
            or (directory / source.relative_to(PACKAGE.parent)).read_bytes() != source.read_bytes()
        ]
        if stale:
            pytest.fail(
                f"{directory} is older than functions/runway_archiver_lambda ({', '.join(stale)}): run `make build`"
            )
        found[logical_id] = BuiltFunction(
            logical_id, directory, properties["Handler"], int(properties.get("Timeout", default_timeout))
        )
    return found


@pytest.fixture(scope="module")
def python313() -> str:
    found = find_python313()
    if found is None:
        pytest.skip(
            "NO PYTHON 3.13 ON THIS MACHINE: the built artefact was NOT run as Lambda runs it. "
            "Install one (pyenv install 3.13, or uv python install 3.13) or set LAMBDA_PYTHON."
        )
    return found


@pytest.fixture(scope="module")
def runtime() -> Path:
    """The runtime's packages, exactly the pinned versions (`make lambda-runtime` installs them)."""
    installed = {p.name.split("-")[0].lower(): p.name for p in RUNTIME.glob("*.dist-info")}
    for name, version in pinned_versions().items():
        if installed.get(name) != f"{name}-{version}.dist-info":
            pytest.fail(f"{RUNTIME} does not hold {name}=={version}: run `make lambda-runtime`")
    return RUNTIME


@pytest.fixture
def server_archive(
    feed: FeedEmulator, dynamodb_local: DynamoDBLocal | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Archive]:
    """The stack deployed into moto_server, a process the functions' processes reach over loopback
    (DynamoDB in the session's DynamoDB Local; the stack's table is a name of its own)."""
    with MotoServer(dynamodb=dynamodb_local) as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        stack = deploy(boto3.session.Session(), api_key=API_KEY, parameters=feed.stack_parameters())
        yield subscribed_archive(stack, monkeypatch)


def trace_id() -> str:
    """The X-Ray header Lambda gives each invocation of a function with active tracing."""
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=1"


@dataclass
class ArtefactRuntime:
    """Invokes the built functions as Lambda would: one fresh interpreter per invocation."""

    python: str
    runtime: Path
    functions: dict[str, BuiltFunction]
    archive: Archive
    xray_daemon: str
    botocore_seen: set[str]

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        function = self.functions[logical_id]
        name = f"runway-archiver-{logical_id}"
        environment = {
            "PATH": os.defpath,
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            **FAKE_CREDENTIALS,
            # Where AWS is: the endpoints the tests point boto3 at (moto_server, or another emulator).
            **{k: v for k, v in os.environ.items() if k.startswith("AWS_ENDPOINT_URL")},
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "LAMBDA_TASK_ROOT": str(function.directory),
            "LAMBDA_RUNTIME_DIR": str(self.runtime),
            # Tracing is active, as the template asks: the X-Ray SDK runs and sends to a socket of ours.
            "_X_AMZN_TRACE_ID": trace_id(),
            "AWS_XRAY_DAEMON_ADDRESS": self.xray_daemon,
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            **self.archive.stack.environments[logical_id],
        }
        done = subprocess.run(
            [
                self.python,
                "-I",
                "-S",
                str(BOOTSTRAP),
                str(function.directory),
                str(self.runtime),
                function.handler,
                name,
                str(function.timeout),
            ],
            check=False,
            input=json.dumps(event),
            env=environment,
            cwd=function.directory,
            capture_output=True,
            text=True,
            timeout=function.timeout + 60,
        )
        lines = done.stdout.splitlines()
        results = [json.loads(line.removeprefix(RESULT_MARK)) for line in lines if line.startswith(RESULT_MARK)]
        assert done.returncode == 0 and results, (
            f"{logical_id} failed as built: {results[-1] if results else 'no answer'}\n{done.stderr[-4000:]}"
        )
        for line in lines:
            if line.startswith(SDK_MARK):
                self.botocore_seen.add(json.loads(line.removeprefix(SDK_MARK))["file"])
        return results[-1]


@pytest.fixture(scope="module")
def artefact() -> dict[str, BuiltFunction]:
    return built_functions()


@pytest.fixture
def built(
    python313: str, runtime: Path, artefact: dict[str, BuiltFunction], server_archive: Archive
) -> Iterator[ArtefactRuntime]:
    # Where the X-Ray SDK sends its segments: a UDP socket that takes them and is never read.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        host, port = daemon.getsockname()
        yield ArtefactRuntime(python313, runtime, artefact, server_archive, f"{host}:{port}", set())


def test_the_built_functions_archive_and_announce_on_python313_with_the_runtimes_boto3(
    built: ArtefactRuntime, feed: FeedEmulator
) -> None:
    archive = built.archive
    # Given a task that has finished (its video over the 8 MiB part size: a multipart upload, then
    # the copy that re-stamps it) and one the provider is still generating
    feed.add_task("art-polled", "3", video_size=MULTIPART_VIDEO)
    feed.add_task("art-called-back", "1 3", video_size=100_000)
    archive.register("art-polled", "art-called-back")

    # When the schedule invokes the built poller
    now = iso_utc(datetime.now(UTC))
    summary = built.invoke("PollerFunction", {"scheduled_time": now})

    # Then it archives and announces the finished task and keeps the other pending
    assert (summary["archived"], summary["announced"], summary["still_pending"]) == (1, 1, 1), summary

    # When the provider calls the built callback function back for the other task
    callback = load_event("callback/function-url.json")
    callback["body"] = json.dumps(feed.finish("art-called-back"))
    callback["queryStringParameters"] = {"token": archive.callback_token}
    callback["rawQueryString"] = f"token={archive.callback_token}"
    reply = built.invoke("IntakeFunction", callback)
    assert reply["statusCode"] == 202, reply

    # And the work queue hands its request to the built worker, as the SQS event source would
    sqs = boto3.client("sqs")
    [message] = sqs.receive_message(QueueUrl=archive.work_queue_url, WaitTimeSeconds=1)["Messages"]
    record = load_event("sqs-work-request.json")["Records"][0]
    record.update(messageId=message["MessageId"], receiptHandle=message["ReceiptHandle"], body=message["Body"])
    worked = built.invoke("WorkerFunction", {"Records": [record]})
    assert worked == {"batchItemFailures": []}

    # Then both tasks are archived and each announced once, by code that ran on the runtime's botocore only
    for task_id, size in (("art-polled", MULTIPART_VIDEO), ("art-called-back", 100_000)):
        item = archive.item(task_id)
        assert item["status"] == "ARCHIVED"
        assert archive.object(f"runway/{task_id}/video.mp4")["ContentLength"] == size
        # the SHA-256 checksum S3 checks, the version, the metadata and the manifest work
        # with the runtime's boto3 too
        head = boto3.client("s3").head_object(
            Bucket=archive.stack.bucket_name, Key=f"runway/{task_id}/video.mp4", ChecksumMode="ENABLED"
        )
        video = item["assets"]["video"]
        assert (head["ChecksumSHA256"], head["VersionId"]) == (video["checksum_sha256"], video["version_id"])
        assert head["Metadata"] == {"task-id": task_id, "role": "video", "sha256": video["sha256"]}
        assert video["sha256"] == media_sha256(f"/media/{task_id}/video.mp4", size)
        # the whole file's SHA-256, also for the multipart one (re-stamped in one CopyObject)
        assert video["checksum_sha256"] == base64.b64encode(bytes.fromhex(video["sha256"])).decode()
        assert archive.object(item["manifest"]["key"])["VersionId"] == item["manifest"]["version_id"]
    assert sorted((e["subject"], e["type"]) for e in archive.events()) == [
        ("art-called-back", "runway.task.archived"),
        ("art-polled", "runway.task.archived"),
    ]
    assert built.botocore_seen and all(Path(f).is_relative_to(built.runtime) for f in built.botocore_seen)
