"""Deploy template.yaml into an emulated AWS (moto) the way `sam deploy` would, as far as moto goes.

The SAM transform runs locally (aws-sam-translator), the Lambda code is zipped into moto's S3,
and moto's CloudFormation creates the stack. moto does not create some resource types the
template uses, so this module makes up for them, and says so:
- `AWS::SecretsManager::Secret`: created here (the API key given, a generated callback token),
  and the functions' variables that name them (which moto silently drops) filled in;
- `AWS::Lambda::Url`: set aside before `create_stack` (moto cannot resolve its attributes) and
  created here with Lambda's own API; the `CallbackUrl` output is filled in;
- `AWS::Scheduler::Schedule`: not created; the demo invokes the poller as the schedule would;
- `AWS::Lambda::EventSourceMapping` (the worker's SQS trigger): moto would consume the queue and
  try to run the worker in Docker; set aside, and `runway_archiver.local_queue` drives the worker;
- `AWS::S3::BucketPolicy`, `AWS::SNS::TopicPolicy`, `AWS::CloudWatch::Alarm`,
  `AWS::Lambda::EventInvokeConfig`, `AWS::Lambda::Permission`: skipped by moto (a warning only);
  `DeployedStack.not_created` lists them and tests/test_template.py asserts their properties.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import boto3

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"
FUNCTION_SOURCE = REPO_ROOT / "functions"
ARTIFACT_BUCKET = "runway-archiver-local-artifacts"
REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@dataclass(frozen=True)
class DeployedStack:
    """What a deploy produced: the stack outputs, the poller's environment and every function's."""

    stack_name: str
    outputs: Mapping[str, str]
    function_environment: Mapping[str, str]
    environments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # by logical id
    # Resources of the transformed template moto's CloudFormation left out, by logical id: type.
    not_created: Mapping[str, str] = field(default_factory=dict)

    @property
    def table_name(self) -> str:
        return self.outputs["TasksTableName"]

    @property
    def bucket_name(self) -> str:
        return self.outputs["ArchiveBucketName"]

    @property
    def topic_arn(self) -> str:
        return self.outputs["CompletionTopicArn"]


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """template.yaml as a dict, short-form intrinsics (!Ref, !Sub) expanded."""
    from samtranslator.yaml_helper import yaml_parse

    parsed: dict[str, Any] = yaml_parse(path.read_text())
    return parsed


def package_function(source: Path = FUNCTION_SOURCE) -> bytes:
    """The Lambda artefact as `sam build` lays it out for CodeUri: runtime code only."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.rglob("*.py")):
            if "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(source).as_posix())
    return buffer.getvalue()


_transformed: dict[str, dict[str, Any]] = {}


def transform(
    template: dict[str, Any], parameters: Mapping[str, str], code_uri: str, session: boto3.session.Session
) -> dict[str, Any]:
    """Apply the SAM transform, pointing every function's CodeUri at `code_uri` (an s3:// URI).

    The result depends only on the arguments, so it is kept: tests deploy many times a session.
    """
    from samtranslator.public.translator import ManagedPolicyLoader
    from samtranslator.translator.transform import transform as sam_transform

    cache_key = json.dumps([template, dict(parameters), code_uri], sort_keys=True)
    if cache_key in _transformed:
        cached: dict[str, Any] = json.loads(json.dumps(_transformed[cache_key]))
        return cached
    template = json.loads(json.dumps(template))
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = code_uri
    result: dict[str, Any] = sam_transform(template, dict(parameters), ManagedPolicyLoader(session.client("iam")))
    _transformed[cache_key] = result
    copy: dict[str, Any] = json.loads(json.dumps(result))
    return copy


def deploy(
    session: boto3.session.Session,
    *,
    stack_name: str = "runway-archiver-local",
    parameters: Mapping[str, str] | None = None,
    api_key: str = "local-demo-key",
) -> DeployedStack:
    """Deploy template.yaml into the AWS that `session` talks to (moto), return what it made."""
    parameters = dict(parameters or {})
    s3 = session.client("s3")
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key="poller.zip", Body=package_function())
    cloud = transform(load_template(), parameters, f"s3://{ARTIFACT_BUCKET}/poller.zip", session)

    declared_outputs = dict(cloud.get("Outputs", {}))
    function_urls = _set_aside(cloud, "AWS::Lambda::Url")
    # moto would consume the work queue itself and fail to run the worker (it needs Docker):
    # locally, `runway_archiver.local_queue` plays the SQS event source instead.
    _set_aside(cloud, "AWS::Lambda::EventSourceMapping")

    cfn = session.client("cloudformation")
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(cloud),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    cfn.get_waiter("stack_create_complete").wait(StackName=stack_name, WaiterConfig={"Delay": 1})
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    }
    # moto skips unsupported types with a warning only (and leaves a secret's row blank): list them.
    not_created = {
        logical_id: resource["Type"]
        for logical_id, resource in cloud["Resources"].items()
        if "Condition" not in resource and not physical.get(logical_id)
    }

    # moto does not create AWS::SecretsManager::Secret: make them, with values, as an operator would.
    secret_values = {"ApiKeySecret": api_key}
    secret_arns = {
        logical_id: session.client("secretsmanager").create_secret(
            Name=f"{stack_name}-{logical_id}", SecretString=secret_values.get(logical_id, secrets.token_urlsafe(36))
        )["ARN"]
        for logical_id, resource in cloud["Resources"].items()
        if resource["Type"] == "AWS::SecretsManager::Secret"
    }
    for name, output in declared_outputs.items():
        if _ref(output.get("Value")) in secret_arns:
            outputs[name] = secret_arns[output["Value"]["Ref"]]

    _apply_bucket_versioning(session, cloud, physical)

    lambda_client = session.client("lambda")
    environments: dict[str, dict[str, str]] = {}
    for logical_id, resource in cloud["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        declared = resource["Properties"].get("Environment", {}).get("Variables", {})
        configuration = lambda_client.get_function_configuration(FunctionName=physical[logical_id])
        # moto hands back Number parameters as numbers; Lambda environments are strings.
        environment = {k: str(v) for k, v in configuration.get("Environment", {}).get("Variables", {}).items()}
        environment.update(
            {name: secret_arns[value["Ref"]] for name, value in declared.items() if _ref(value) in secret_arns}
        )
        lambda_client.update_function_configuration(
            FunctionName=physical[logical_id], Environment={"Variables": environment}
        )
        environments[logical_id] = environment

    for url_id, url in function_urls.items():
        function = url["Properties"]["TargetFunctionArn"]["Ref"]
        created = lambda_client.create_function_url_config(
            FunctionName=physical[function], AuthType=url["Properties"]["AuthType"]
        )
        for name, output in declared_outputs.items():
            if output.get("Value") == {"Fn::GetAtt": [url_id, "FunctionUrl"]}:
                outputs[name] = created["FunctionUrl"]
    return DeployedStack(stack_name, outputs, environments["PollerFunction"], environments, not_created)


def _apply_bucket_versioning(session: boto3.session.Session, cloud: dict[str, Any], physical: dict[str, str]) -> None:
    """moto's CloudFormation ignores a bucket's VersioningConfiguration: apply it as S3 would."""
    for logical_id, resource in cloud["Resources"].items():
        status = resource.get("Properties", {}).get("VersioningConfiguration", {}).get("Status")
        if resource["Type"] == "AWS::S3::Bucket" and status and logical_id in physical:
            session.client("s3").put_bucket_versioning(
                Bucket=physical[logical_id], VersioningConfiguration={"Status": status}
            )


def _ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def _set_aside(cloud: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Take the resources of a type moto cannot create out of the template, with what refers to them."""
    taken = {k: v for k, v in cloud["Resources"].items() if v["Type"] == resource_type}
    for logical_id in taken:
        del cloud["Resources"][logical_id]
    outputs = cloud.get("Outputs", {})
    for name in [n for n, o in outputs.items() if any(f'"{k}"' in json.dumps(o) for k in taken)]:
        del outputs[name]
    return taken


# -- moto_server in its own process -------------------------------------------------------------
def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MotoServer:
    """moto's server on loopback as a separate process (so its memory is not ours).

    Requests are served one at a time: moto's backends have no locks, and real DynamoDB makes
    each conditional write atomic, which the claims rely on. See `runway_archiver.moto_serialized`.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-m", "runway_archiver.moto_serialized", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):  # noqa: S310 - loopback
                    return self
            except OSError:
                if self._process.poll() is not None:
                    raise RuntimeError("moto_server exited at start-up") from None
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"moto_server did not answer on {self.endpoint} within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def reset(self) -> None:
        """Forget every resource: a clean AWS for the next test."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback
            pass

    def busy(self) -> tuple[float, int]:
        """Seconds spent serving requests so far (one at a time), and how many were served."""
        with urllib.request.urlopen(f"{self.endpoint}/_serialized/busy", timeout=10) as answer:  # noqa: S310
            figures = json.loads(answer.read())
        return float(figures["busy_seconds"]), int(figures["requests"])

    def environment(self) -> dict[str, str]:
        """What boto3 needs to talk to this server instead of AWS."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}


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
