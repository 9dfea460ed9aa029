"""Every AWS call the tests make through boto3, judged as AWS would judge it, before moto answers.

moto evaluates no resource policy (topic, bucket) and, by default, no identity policy: a call AWS
refuses succeeds there, and every test passes. This guard hooks botocore's `before-call` event on
every session (the default one and each new one) and, for each call, works out the IAM action(s)
and resource ARN(s) it asks for, the caller's identity, and the deployed stack's transformed
policies, and asks `tests/aws_model.decide`. A call AWS would refuse gets the error AWS returns
(S3: AccessDenied 403; SNS: AuthorizationError 403; DynamoDB, Secrets Manager, Lambda:
AccessDeniedException; SQS: AccessDenied), raised by botocore as for a real answer.

Who calls:
- a handler (`runway_archiver_lambda.handlers.poller`, `worker`, `callback`): its function's role,
  with the role's inline policies from the deployed template. Each handler's `lambda_handler` is
  wrapped, so every way of invoking it (tests/support/archive.py, the CLI's in-process `run`, the
  demo, tests/faults/run_once.py) runs as that role; threads the handler starts inherit it.
- the operator CLI, in the subprocesses the tests start: an IAM Identity Center administrator, as
  docs/configuration-and-deployment.md's "Who may do what" defines an operator (any principal of
  the account whose own policies allow the action). Every Python subprocess of the test session
  loads this guard (sitecustomize on PYTHONPATH) with that identity.
- the tests themselves (deploy, seeding, assertions): `HARNESS`, an administrator of the account,
  explicit: still subject to the resource policies.

Anything the guard cannot judge (an operation it has no mapping for, a policy element or condition
tests/aws_model.py does not model, a resource policy of a type it does not read) raises
`CannotJudge`: never allowed by default. Every refusal is also recorded, so a refusal the code
swallowed (a `except ClientError` fallback) still fails the test (see `refusals`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.abc
import importlib.machinery
import json
import os
import re
import sys
import threading
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from tests.aws_model import ACCOUNT, REGION, Principal, Request, Stack, decide

if TYPE_CHECKING:
    import botocore.session
    from botocore.awsrequest import AWSResponse

ALLOW_EVERYTHING = ({"Effect": "Allow", "Action": "*", "Resource": "*"},)
HARNESS = "harness"
OPERATOR = "operator"
# The identities, by name: the two administrators, then each handler's function (logical id).
ADMINISTRATORS = {
    HARNESS: f"arn:aws:iam::{ACCOUNT}:role/TestHarnessAdministrator",
    OPERATOR: f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_AdministratorAccess_0a1b2c3d",
}
HANDLERS = {"poller": "PollerFunction", "worker": "WorkerFunction", "callback": "IntakeFunction"}
# Resource types whose policies grant or deny access: the guard reads these, and refuses to judge
# a stack with another (a queue policy, a key policy...) until it is taught to.
READ_POLICY_TYPES = {"AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy"}
UNREAD_POLICY_TYPES = {"AWS::SQS::QueuePolicy", "AWS::KMS::Key", "AWS::SecretsManager::ResourcePolicy"}

IDENTITY_ENV = "RUNWAY_ARCHIVER_POLICY_GUARD_IDENTITY"  # a subprocess's identity (the CLI: operator)
REFUSALS_ENV = "RUNWAY_ARCHIVER_POLICY_GUARD_REFUSALS"  # where subprocesses append their refusals
SITE_DIR = Path(__file__).parent / "policy_guard_site"  # its sitecustomize loads the guard
REPO_ROOT = Path(__file__).resolve().parents[2]

_STARTED_AS = os.environ.get(IDENTITY_ENV, HARNESS)  # a subprocess of the tests: the operator
identity: contextvars.ContextVar[str] = contextvars.ContextVar("aws_identity", default=_STARTED_AS)
_judging: contextvars.ContextVar[bool] = contextvars.ContextVar("policy_guard_judging", default=False)


class CannotJudge(AssertionError):
    """The guard meets something it cannot evaluate: a test error, never an allow."""


@contextlib.contextmanager
def acting_as(name: str) -> Iterator[None]:
    token = identity.set(name)
    try:
        yield
    finally:
        identity.reset(token)


# -- what a call asks for ------------------------------------------------------------------------
def _s3_object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _copy_source(source: Any) -> tuple[str, str, str | None]:
    if isinstance(source, dict):
        return source["Bucket"], source["Key"], source.get("VersionId")
    path, _, query = str(source).lstrip("/").partition("?")
    bucket, _, key = unquote(path).partition("/")
    version = re.search(r"versionId=([^&]+)", query)
    return bucket, key, version.group(1) if version else None


def _s3(operation: str, p: dict[str, Any]) -> list[tuple[str, str]]:  # noqa: PLR0911 - a table
    bucket = p.get("Bucket", "")
    bucket_arn = f"arn:aws:s3:::{bucket}"
    read = "s3:GetObjectVersion" if p.get("VersionId") else "s3:GetObject"
    if operation in ("GetObject", "HeadObject", "GetObjectAttributes"):
        return [(read, _s3_object(bucket, p["Key"]))]
    if operation in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        return [("s3:PutObject", _s3_object(bucket, p["Key"]))]
    if operation in ("CopyObject", "UploadPartCopy"):
        source_bucket, source_key, version = _copy_source(p["CopySource"])
        source_read = "s3:GetObjectVersion" if version else "s3:GetObject"
        return [("s3:PutObject", _s3_object(bucket, p["Key"])), (source_read, _s3_object(source_bucket, source_key))]
    if operation == "AbortMultipartUpload":
        return [("s3:AbortMultipartUpload", _s3_object(bucket, p["Key"]))]
    if operation == "ListParts":
        return [("s3:ListMultipartUploadParts", _s3_object(bucket, p["Key"]))]
    if operation == "DeleteObject":
        delete = "s3:DeleteObjectVersion" if p.get("VersionId") else "s3:DeleteObject"
        return [(delete, _s3_object(bucket, p["Key"]))]
    if operation == "DeleteObjects":  # S3 judges each key: one refused key is an error in the answer,
        # here the whole call (the archiver treats either as "kept")
        return [
            ("s3:DeleteObjectVersion" if o.get("VersionId") else "s3:DeleteObject", _s3_object(bucket, o["Key"]))
            for o in p["Delete"]["Objects"]
        ]
    bucket_actions = {
        "ListObjects": "s3:ListBucket",
        "ListObjectsV2": "s3:ListBucket",
        "ListObjectVersions": "s3:ListBucketVersions",
        "ListMultipartUploads": "s3:ListBucketMultipartUploads",
        "CreateBucket": "s3:CreateBucket",
        "DeleteBucket": "s3:DeleteBucket",
        "HeadBucket": "s3:ListBucket",
        "GetBucketVersioning": "s3:GetBucketVersioning",
        "PutBucketVersioning": "s3:PutBucketVersioning",
        "GetBucketLocation": "s3:GetBucketLocation",
        "GetBucketPolicy": "s3:GetBucketPolicy",
        "PutBucketPolicy": "s3:PutBucketPolicy",
        "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
        "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
        "GetBucketNotificationConfiguration": "s3:GetBucketNotification",
        "PutBucketNotificationConfiguration": "s3:PutBucketNotification",
    }
    if operation in bucket_actions:
        return [(bucket_actions[operation], bucket_arn)]
    if operation == "ListBuckets":
        return [("s3:ListAllMyBuckets", "*")]
    raise CannotJudge(f"the policy guard has no IAM action for s3 {operation}: add it to tests/support/policy_guard.py")


def _dynamodb_table(name: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


def _dynamodb(operation: str, p: dict[str, Any]) -> list[tuple[str, str]]:
    action = f"dynamodb:{operation}"
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [(action, _dynamodb_table(name)) for name in p["RequestItems"]]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        verbs = {
            "Put": "PutItem",
            "Update": "UpdateItem",
            "Delete": "DeleteItem",
            "ConditionCheck": "ConditionCheckItem",
            "Get": "GetItem",
        }
        return [
            (f"dynamodb:{verbs[verb]}", _dynamodb_table(body["TableName"]))
            for item in p["TransactItems"]
            for verb, body in item.items()
        ]
    if operation in ("ListTables", "DescribeLimits", "DescribeEndpoints"):
        return [(action, "*")]
    table = _dynamodb_table(p["TableName"])
    if p.get("IndexName"):
        table = f"{table}/index/{p['IndexName']}"
    return [(action, table)]


def _queue_arn(url: str) -> str:
    account, name = urlsplit(url).path.strip("/").split("/")[-2:]
    return f"arn:aws:sqs:{REGION}:{account}:{name}"


def _sqs(operation: str, p: dict[str, Any]) -> list[tuple[str, str]]:
    action = f"sqs:{operation.removesuffix('Batch')}"
    if "QueueUrl" in p:
        return [(action, _queue_arn(p["QueueUrl"]))]
    if "QueueName" in p:
        return [(action, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{p['QueueName']}")]
    return [(action, "*")]  # ListQueues


def _sns(operation: str, p: dict[str, Any]) -> list[tuple[str, str]]:
    for name in ("TopicArn", "TargetArn", "SubscriptionArn", "ResourceArn"):
        if name in p:
            resource = p[name]
            if name == "SubscriptionArn":  # judged on its topic (SNS's own rule for subscription actions)
                resource = resource.rsplit(":", 1)[0]
            return [(f"sns:{operation}", resource)]
    if operation in ("CreateTopic",):
        return [(f"sns:{operation}", f"arn:aws:sns:{REGION}:{ACCOUNT}:{p['Name']}")]
    return [(f"sns:{operation}", "*")]


def _secretsmanager(operation: str, p: dict[str, Any]) -> list[tuple[str, str]]:
    secret = p.get("SecretId") or p.get("Name")
    if secret is None:
        return [(f"secretsmanager:{operation}", "*")]
    arn = secret if secret.startswith("arn:") else f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret}"
    return [(f"secretsmanager:{operation}", arn)]


def _lambda(operation: str, p: dict[str, Any]) -> list[tuple[str, str]]:
    action = "lambda:InvokeFunction" if operation == "Invoke" else f"lambda:{operation}"
    name = p.get("FunctionName")
    if name is None:
        return [(action, "*")]
    arn = name if name.startswith("arn:") else f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return [(action, arn)]


def _any_resource(prefix: str) -> Callable[[str, dict[str, Any]], list[tuple[str, str]]]:
    """Services the stack gives no resource policy and no role a grant on: judged on the identity alone."""

    def asks(operation: str, p: dict[str, Any]) -> list[tuple[str, str]]:
        if p.get("StackName"):
            return [(f"{prefix}:{operation}", f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{p['StackName']}/*")]
        return [(f"{prefix}:{operation}", "*")]

    return asks


ASKS: dict[str, Callable[[str, dict[str, Any]], list[tuple[str, str]]]] = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "sns": _sns,
    "secretsmanager": _secretsmanager,
    "lambda": _lambda,
    "cloudformation": _any_resource("cloudformation"),
    "monitoring": _any_resource("cloudwatch"),
    "logs": _any_resource("logs"),
    "iam": _any_resource("iam"),
    "ssm": _any_resource("ssm"),
    "scheduler": _any_resource("scheduler"),
    "sts": _any_resource("sts"),
}

# The services whose resources the stack gives policies of their own (READ_POLICY_TYPES).
RESOURCE_POLICY_SERVICES = {"s3", "sns"}

ERRORS = {  # what AWS answers a refused call, per service: (HTTP status, error code)
    "s3": (403, "AccessDenied"),
    "sns": (403, "AuthorizationError"),
    "dynamodb": (400, "AccessDeniedException"),
    "secretsmanager": (400, "AccessDeniedException"),
    "lambda": (403, "AccessDeniedException"),
    "sqs": (403, "AccessDenied"),
}


# -- the deployed stacks' policies ---------------------------------------------------------------
class DeployedStackModel(Stack):
    """A stack as moto deployed it: tests/aws_model.Stack with the physical names moto chose."""

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, str],
        name: str,
        physical: dict[str, str],
        secrets: dict[str, str],
    ) -> None:
        super().__init__(template, {k: v for k, v in parameters.items() if k in template.get("Parameters", {})}, name)
        self.physical = physical
        self.secrets = secrets

    def ref(self, name: str) -> Any:
        if name in self.secrets:
            return self.secrets[name]
        if name in self.physical:
            return self.physical[name]  # what Ref gives: a name, a queue's URL, a topic's ARN
        return super().ref(name)

    def get_att(self, name: str, attribute: str) -> str:
        if name not in self.physical or attribute != "Arn":
            return super().get_att(name, attribute)
        kind = self.template["Resources"][name]["Type"]
        physical = self.physical[name]
        arns = {
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{physical}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{physical}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{physical}",
            "AWS::SQS::Queue": _queue_arn(physical) if physical.startswith("http") else physical,
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}",
            "AWS::SNS::Topic": physical,
        }
        return arns[kind] if kind in arns else super().get_att(name, attribute)


@dataclass
class StackPolicies:
    """What the guard needs of one deployed stack, resolved once."""

    name: str
    roles: dict[str, Principal]  # by function logical id
    resource_policies: list[tuple[str, list[dict[str, Any]]]]  # (resource ARN pattern, statements)
    table_names: set[str]  # the TABLE_NAME its functions are given
    complete: bool = True  # False: a secret its policies name was not made yet (read it again)

    @classmethod
    def read(cls, model: DeployedStackModel) -> StackPolicies:
        resources = model.resources()
        unread = {r["Type"] for r in resources.values()} & UNREAD_POLICY_TYPES
        if unread:
            raise CannotJudge(f"the stack has {sorted(unread)}: the policy guard does not read these policies yet")
        policies: list[tuple[str, list[dict[str, Any]]]] = []
        for resource in resources.values():
            props = resource["Properties"]
            statements = _listed(props.get("PolicyDocument", {}).get("Statement", []))
            if resource["Type"] == "AWS::S3::BucketPolicy":
                policies.append((f"arn:aws:s3:::{props['Bucket']}", statements))
            elif resource["Type"] == "AWS::SNS::TopicPolicy":
                policies.extend((topic, statements) for topic in props["Topics"])
        roles = {}
        for logical_id, resource in resources.items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            role_arn = resource["Properties"]["Role"]
            role_id = next(
                (
                    r
                    for r, v in resources.items()
                    if v["Type"] == "AWS::IAM::Role" and model.get_att(r, "Arn") == role_arn
                ),
                None,
            )
            if role_id is None:
                raise CannotJudge(f"{logical_id}'s role {role_arn} is not in the stack")
            role = resources[role_id]["Properties"]
            statements = [s for p in role.get("Policies", []) for s in _listed(p["PolicyDocument"]["Statement"])]
            roles[logical_id] = Principal(role_arn, tuple(statements))
        tables = {
            str(r["Properties"].get("Environment", {}).get("Variables", {}).get("TABLE_NAME"))
            for r in resources.values()
            if r["Type"] == "AWS::Lambda::Function"
        }
        return cls(model.name, roles, policies, tables)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass
class StackRecord:
    """A stack as the calls that made it said: CreateStack's template and parameters, the physical
    ids ListStackResources answered (the local deploy asks at once)."""

    name: str
    template: dict[str, Any]
    parameters: dict[str, str]
    physical: dict[str, str] | None = None
    policies: StackPolicies | None = None


@dataclass
class World:
    """One embedded AWS (moto in-process, or a moto_server): its stacks, learnt from the calls that
    made them (no call of the guard's own: moto's CloudFormation reads are slow), and indexes."""

    stacks: dict[str, StackRecord] = field(default_factory=dict)  # by stack name (a new one replaces)
    secrets: dict[str, str] = field(default_factory=dict)  # name -> ARN
    dirty: bool = True
    discovered: bool = False  # asked CloudFormation for every stack once
    by_resource: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # bucket name / topic ARN
    roles_by_table: dict[str, dict[str, Principal]] = field(default_factory=dict)


def _policy_key(resource: str) -> str:
    if resource.startswith("arn:aws:s3:::"):
        return resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
    return resource


class PolicyGuard:
    def __init__(self) -> None:
        self.worlds: dict[str, World] = {}
        self.refusals: list[str] = []
        self._tables: dict[tuple[str, str], str] = {}
        self._lock = threading.RLock()

    # -- hooking ---------------------------------------------------------------------------------
    def register(self, session: botocore.session.Session) -> None:
        handlers: dict[str, Any] = {
            "before-parameter-build": self._remember_params,
            "before-call": self._judge,
            # what a stack's policies name: the stack, its physical names, the secrets the local deploy makes
            "after-call.cloudformation": self._learn,
            "after-call.secretsmanager.CreateSecret": self._learn,
        }
        for event, handler in handlers.items():
            session.register(event, handler, unique_id=f"policy-guard:{event}")

    @staticmethod
    def _remember_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["policy_guard_params"] = dict(params)

    @staticmethod
    def _endpoint(service: str, url: str) -> str | None:
        """The moto_server this call's world lives in (None: moto in this process). DynamoDB may
        be served apart (DynamoDB Local): its world is the one AWS_ENDPOINT_URL names."""
        if service == "dynamodb":
            return os.environ.get("AWS_ENDPOINT_URL") or None
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}" if parts.hostname in ("127.0.0.1", "localhost") else None

    def _learn(self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if http_response.status_code >= 300:
            return
        params = context.get("policy_guard_params", {})
        with self._lock:
            world = self._known(context.get("policy_guard_world", "moto-in-process"))
            if model.name == "CreateStack":
                body = params["TemplateBody"]
                world.stacks[params["StackName"]] = StackRecord(
                    params["StackName"],
                    json.loads(body) if isinstance(body, str) else body,
                    {p["ParameterKey"]: p["ParameterValue"] for p in params.get("Parameters", [])},
                )
            elif model.name == "ListStackResources" and params.get("StackName") in world.stacks:
                world.stacks[params["StackName"]].physical = {
                    r["LogicalResourceId"]: r["PhysicalResourceId"]
                    for r in parsed["StackResourceSummaries"]
                    if r.get("PhysicalResourceId")
                }
            elif model.name == "CreateSecret":
                world.secrets[params["Name"]] = parsed["ARN"]
            elif model.name == "DeleteStack":
                world.stacks.pop(params.get("StackName", ""), None)
            else:
                return
            world.dirty = True
            _share(context.get("policy_guard_world", "moto-in-process"), world)

    # -- judging ---------------------------------------------------------------------------------
    def _judge(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        if _judging.get():
            return None
        service = model.service_model.endpoint_prefix
        operation = model.name
        url = params.get("url", "")
        endpoint = self._endpoint(service, url)
        world_key = endpoint or "moto-in-process"
        context["policy_guard_world"] = world_key
        caller = identity.get()
        if service not in ASKS:
            raise CannotJudge(
                f"the policy guard does not know {service} ({operation}): add it to tests/support/policy_guard.py"
            )
        if caller in ADMINISTRATORS and service not in RESOURCE_POLICY_SERVICES:
            return None  # an administrator, and no resource policy of the stack's in this service
        asks = ASKS[service](operation, context.get("policy_guard_params", {}))
        if service == "dynamodb":
            asks = [(action, self._table_arn(url, resource)) for action, resource in asks]
        world = self._world(world_key, endpoint)
        principal = self._principal(caller, world)
        # An emulator on loopback stands in for AWS's TLS endpoint.
        secure = url.startswith("https://") or endpoint is not None
        for action, resource in asks:
            statements = world.by_resource.get(_policy_key(resource), [])
            try:
                decision = decide(Request(principal, action, resource, secure_transport=secure), statements)
            except NotImplementedError as exc:
                raise CannotJudge(f"the policy guard cannot evaluate {action} on {resource}: {exc}") from exc
            if decision != "allowed":
                return self._refuse(service, operation, principal, action, resource, decision)
        return None

    def _table_arn(self, url: str, resource: str) -> str:
        """The table's ARN as its engine names it (DynamoDB Local's region and account are its own),
        asked once per table."""
        prefix = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
        if not resource.startswith(prefix):
            return resource
        name, _, index = resource.removeprefix(prefix).partition("/")
        parts = urlsplit(url)
        key = (parts.netloc, name)
        if key not in self._tables:
            token = _judging.set(True)
            try:
                client = _client("dynamodb", f"{parts.scheme}://{parts.netloc}")
                try:
                    self._tables[key] = client.describe_table(TableName=name)["Table"]["TableArn"]
                except client.exceptions.ResourceNotFoundException:
                    return resource  # no such table: the call fails on its own
            finally:
                _judging.reset(token)
        return self._tables[key] + (f"/{index}" if index else "")

    def _principal(self, caller: str, world: World) -> Principal:
        if caller in ADMINISTRATORS:
            return Principal(ADMINISTRATORS[caller], ALLOW_EVERYTHING)
        table = os.environ.get("TABLE_NAME", "")  # the handler's stack: the one whose table it is given
        role = world.roles_by_table.get(table, {}).get(caller)
        if role is None and not world.discovered:  # a stack made before this process: ask CloudFormation
            with self._lock:
                _discover(world, None if world is self.worlds.get("moto-in-process") else _endpoint_of(world, self))
            world = self._world(next(k for k, w in self.worlds.items() if w is world), _endpoint_of(world, self))
            role = world.roles_by_table.get(table, {}).get(caller)
        if role is None:
            raise CannotJudge(f"the policy guard knows no deployed role of {caller} for the table {table!r}")
        return role

    def _known(self, key: str) -> World:
        """The world as this process knows it (a subprocess: from what the test session shared)."""
        if key not in self.worlds:
            self.worlds[key] = _shared(key) or World()
        return self.worlds[key]

    def _world(self, key: str, endpoint: str | None) -> World:
        """The world, its policies read and indexed (again after a stack or a secret was made)."""
        with self._lock:
            world = self._known(key)
            if not world.dirty:
                return world
            token = _judging.set(True)
            try:
                for name, record in list(world.stacks.items()):
                    if record.policies is None or not record.policies.complete:
                        try:
                            record.policies = _read_stack(record, world.secrets, endpoint)
                        except _StackGone:  # made by an earlier test's embedded AWS, since reset
                            del world.stacks[name]
            finally:
                _judging.reset(token)
            world.by_resource = {}
            world.roles_by_table = {}
            for record in world.stacks.values():
                assert record.policies is not None
                for resource, statements in record.policies.resource_policies:
                    world.by_resource.setdefault(_policy_key(resource), []).extend(statements)
                for table in record.policies.table_names:
                    world.roles_by_table[table] = record.policies.roles
            # Read again when a stack or a secret is made (a stack still missing its secret is then completed).
            world.dirty = False
            return world

    def _refuse(
        self, service: str, operation: str, principal: Principal, action: str, resource: str, decision: str
    ) -> tuple[AWSResponse, dict[str, Any]]:
        from botocore.awsrequest import AWSResponse

        status, code = ERRORS.get(service, (403, "AccessDenied"))
        because = (
            "an explicit deny in a resource-based policy"
            if decision == "explicitly denied"
            else "no identity-based policy allows it"
        )
        message = (
            f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource} because {because}"
        )
        refusal = f"{service} {operation}: {code} ({status}): {message}"
        with self._lock:
            self.refusals.append(refusal)
        if path := os.environ.get(REFUSALS_ENV):
            with Path(path).open("a", encoding="utf-8") as log:
                log.write(json.dumps(refusal) + "\n")
        parsed = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0},
        }
        headers: Any = {}
        return AWSResponse("https://policy-guard.invalid/", status, headers, None), parsed


_clients: dict[tuple[str, str | None], Any] = {}


def _client(service: str, endpoint: str | None) -> Any:
    """The guard's own clients (the harness asking what the calls did not say), made once: ~0.2 s each."""
    if (service, endpoint) not in _clients:
        import boto3

        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        _clients[service, endpoint] = session.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]
    return _clients[service, endpoint]


STACKS_ENV = "RUNWAY_ARCHIVER_POLICY_GUARD_STACKS"  # a folder: what the session learnt of each moto_server


def _share_path(key: str) -> Path | None:
    folder = os.environ.get(STACKS_ENV)
    if not folder or key == "moto-in-process":
        return None
    return Path(folder) / (re.sub(r"[^A-Za-z0-9]+", "-", key) + ".json")


def _share(key: str, world: World) -> None:
    """Write what this process learnt of a moto_server's stacks where its subprocesses read it."""
    path = _share_path(key)
    if path is None:
        return
    records = [
        {"name": r.name, "template": r.template, "parameters": r.parameters, "physical": r.physical}
        for r in world.stacks.values()
    ]
    written = path.with_suffix(".tmp")
    written.write_text(json.dumps({"stacks": records, "secrets": world.secrets}), encoding="utf-8")
    written.replace(path)


def _shared(key: str) -> World | None:
    path = _share_path(key)
    if path is None or not path.exists():
        return None
    known = json.loads(path.read_text(encoding="utf-8"))
    stacks = {r["name"]: StackRecord(r["name"], r["template"], r["parameters"], r["physical"]) for r in known["stacks"]}
    return World(stacks=stacks, secrets=known["secrets"])


def _endpoint_of(world: World, guard: PolicyGuard) -> str | None:
    key = next(k for k, w in guard.worlds.items() if w is world)
    return None if key == "moto-in-process" else key


def _discover(world: World, endpoint: str | None) -> None:
    """Every stack CloudFormation has, read once (slow on moto: only when the calls did not say)."""
    world.discovered = True
    token = _judging.set(True)
    try:
        cfn = _client("cloudformation", endpoint)
        for stack in cfn.describe_stacks()["Stacks"]:
            name = stack["StackName"]
            if name in world.stacks:
                continue
            body = cfn.get_template(StackName=name)["TemplateBody"]
            parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
            world.stacks[name] = StackRecord(name, json.loads(body) if isinstance(body, str) else body, parameters)
        for secret in _client("secretsmanager", endpoint).list_secrets()["SecretList"]:
            world.secrets[secret["Name"]] = secret["ARN"]
    finally:
        _judging.reset(token)
    world.dirty = True


class _StackGone(Exception):
    """CloudFormation no longer knows the stack."""


def _read_stack(record: StackRecord, secrets: dict[str, str], endpoint: str | None) -> StackPolicies:
    """One stack's policies, resolved with the names moto gave (parsed once per stack)."""
    if record.physical is None:
        from botocore.exceptions import ClientError

        try:
            summaries = _client("cloudformation", endpoint).list_stack_resources(StackName=record.name)
        except ClientError as exc:
            raise _StackGone(record.name) from exc
        record.physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in summaries["StackResourceSummaries"]
            if r.get("PhysicalResourceId")
        }
    kinds = {logical_id: r["Type"] for logical_id, r in record.template["Resources"].items()}
    wanted = [logical_id for logical_id, kind in kinds.items() if kind == "AWS::SecretsManager::Secret"]
    made = {
        logical_id: secrets[f"{record.name}-{logical_id}"]
        for logical_id in wanted
        if f"{record.name}-{logical_id}" in secrets
    }
    model = DeployedStackModel(record.template, record.parameters, record.name, record.physical, made)
    policies = StackPolicies.read(model)
    policies.complete = len(made) == len(wanted)
    return policies


# -- installing -----------------------------------------------------------------------------------
GUARD = PolicyGuard()
_INSTALLED: list[bool] = []  # once per process


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback on a module once it is imported (at once if it already is): the guard hooks
    botocore and the handlers without importing them, so a subprocess starts no slower."""

    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[[types.ModuleType], None]] = {}

    def add(self, name: str, callback: Callable[[types.ModuleType], None]) -> None:
        if name in sys.modules:
            callback(sys.modules[name])
        else:
            self.callbacks[name] = callback

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        callback = self.callbacks.pop(fullname, None)
        if callback is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            original(module)
            callback(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _wrap_handler(function: str) -> Callable[[types.ModuleType], None]:
    def wrap(module: types.ModuleType) -> None:
        handler = module.__dict__["lambda_handler"]
        if getattr(handler, "__policy_guard__", False):
            return

        @functools.wraps(handler)
        def as_role(event: Any, context: Any) -> Any:
            with acting_as(function):
                return handler(event, context)

        as_role.__policy_guard__ = True  # type: ignore[attr-defined]
        module.__dict__["lambda_handler"] = as_role

    return wrap


def _hook_sessions(module: types.ModuleType) -> None:
    original_init = module.Session.__init__

    @functools.wraps(original_init)
    def init(self: botocore.session.Session, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        GUARD.register(self)

    module.Session.__init__ = init
    boto3 = sys.modules.get("boto3")
    if boto3 is not None:
        boto3.__dict__["DEFAULT_SESSION"] = None  # made again, hooked, at the next boto3.client()


def _propagating_submit(submit: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(submit)
    def with_context(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    return with_context


def install() -> PolicyGuard:
    """Turn the guard on in this process: every botocore session (the default one included), every
    handler's invocation as its role, and a handler's threads acting as it does."""
    if _INSTALLED:
        return GUARD
    _INSTALLED.append(True)
    hooks = _AfterImport()
    sys.meta_path.insert(0, hooks)
    hooks.add("botocore.session", _hook_sessions)
    for module_name, function in HANDLERS.items():
        hooks.add(f"runway_archiver_lambda.handlers.{module_name}", _wrap_handler(function))
    ThreadPoolExecutor.submit = _propagating_submit(ThreadPoolExecutor.submit)  # type: ignore[method-assign]
    return GUARD


def subprocess_environment(refusals_path: str) -> dict[str, str]:
    """What the test session exports so that every Python subprocess it starts (the CLI, the demo,
    tests/faults/run_once.py) runs under the guard, as the operator."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": os.pathsep.join([str(SITE_DIR), str(REPO_ROOT), *([path] if path else [])]),
        IDENTITY_ENV: OPERATOR,
        REFUSALS_ENV: refusals_path,
    }
