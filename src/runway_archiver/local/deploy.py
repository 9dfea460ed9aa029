"""Deploy template.yaml into an emulated AWS the way `sam deploy` would, as far as the emulation goes.

The emulated AWS is whatever the boto3 session given talks to: the embedded one
(`runway_archiver.local.engines`: DynamoDB Local and moto's server) or moto's in-process `mock_aws`.

The SAM transform runs locally (aws-sam-translator), the Lambda code is zipped into moto's S3,
and moto's CloudFormation creates the stack. When DynamoDB is served apart from CloudFormation
(DynamoDB Local), the table is taken out of the stack and created there from the template's own
definition (keys, indexes, projections, TTL when set), its name and ARN written into whatever
referred to it; `DeployedStack.ignored` says which of its properties that engine ignores.
moto does not create some resource types the template uses, so this module makes up for them,
and says so:
- `AWS::SecretsManager::Secret`: created here (the API key given, a generated callback token),
  and the functions' variables that name them (which moto silently drops) filled in;
- `AWS::Lambda::Url`: set aside before `create_stack` (moto cannot resolve its attributes) and
  created here with Lambda's own API; the `CallbackUrl` output is filled in;
- `AWS::Scheduler::Schedule`: not created; the demo invokes the poller as the schedule would;
- `AWS::Lambda::EventSourceMapping` (the worker's SQS trigger): moto would consume the queue and
  try to run the worker in Docker; set aside, and `runway_archiver.local.queue` drives the worker;
- `AWS::S3::BucketPolicy`, `AWS::SNS::TopicPolicy`, `AWS::CloudWatch::Alarm`,
  `AWS::Lambda::EventInvokeConfig`, `AWS::Lambda::Permission`: skipped by moto (a warning only);
  `DeployedStack.not_created` lists them and tests/test_template.py asserts their properties.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .engines import DYNAMODB_LOCAL, REGION, REPO_ROOT, EmbeddedAwsError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    import boto3

TEMPLATE = REPO_ROOT / "template.yaml"
FUNCTION_SOURCE = REPO_ROOT / "functions"
ARTIFACT_BUCKET = "runway-archiver-local-artifacts"


@dataclass(frozen=True)
class DeployedStack:
    """What a deploy produced: the stack outputs, the poller's environment and every function's."""

    stack_name: str
    outputs: Mapping[str, str]
    function_environment: Mapping[str, str]
    environments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # by logical id
    # Resources of the transformed template moto's CloudFormation left out, by logical id: type.
    not_created: Mapping[str, str] = field(default_factory=dict)
    # Resources created apart from the stack, by logical id: the engine (the table: "DynamoDB Local").
    created_apart: Mapping[str, str] = field(default_factory=dict)
    # Properties of those resources the engine ignores, "LogicalId.Property": why.
    ignored: Mapping[str, str] = field(default_factory=dict)

    @property
    def table_name(self) -> str:
        return self.outputs["TasksTableName"]

    @property
    def bucket_name(self) -> str:
        return self.outputs["ArchiveBucketName"]

    @property
    def topic_arn(self) -> str:
        return self.outputs["CompletionTopicArn"]

    @property
    def every_environment(self) -> dict[str, str]:
        """Every function's environment in one: for a process that runs them all (the demo, a benchmark)."""
        return {k: v for environment in self.environments.values() for k, v in environment.items()}


_parsed_templates: dict[str, str] = {}


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """template.yaml as a dict, short-form intrinsics (!Ref, !Sub) expanded.

    Parsing (PyYAML in pure Python) costs more than reading: the result is kept by the file's
    text, so an edited template is parsed afresh, and each caller gets a copy of its own.
    """
    from samtranslator.yaml_helper import yaml_parse

    text = path.read_text()
    if text not in _parsed_templates:
        _parsed_templates[text] = json.dumps(yaml_parse(text))
    parsed: dict[str, Any] = json.loads(_parsed_templates[text])
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

    # The translator's own usage metrics are never published here; its goodbye warning (at exit,
    # "There are unpublished metrics") would be a stray line under the demo's report.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
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
    api_key: str | None = "local-demo-key",
    gateway_api_key: str | None = None,
) -> DeployedStack:
    """Deploy template.yaml into the AWS that `session` talks to (moto), return what it made.

    `api_key` goes in ApiKeySecret (the Provider's key), `gateway_api_key` in GatewayApiKeySecret (the
    gateway's key, a secret the stack makes with Provider=runway only); None leaves a secret without a
    value, as a fresh deploy on AWS does."""
    with warnings.catch_warnings():
        # moto (in this process) warns of each type it skips, whenever it reads the stack;
        # `DeployedStack.not_created` reports them once, as data.
        warnings.filterwarnings("ignore", message="Tried to parse AWS::", category=UserWarning)
        return _deploy(
            session, stack_name, parameters, {"ApiKeySecret": api_key, "GatewayApiKeySecret": gateway_api_key}
        )


def _deploy(
    session: boto3.session.Session,
    stack_name: str,
    parameters: Mapping[str, str] | None,
    secret_values: Mapping[str, str | None],
) -> DeployedStack:
    parameters = dict(parameters or {})
    # A boto3 client costs 20-40 ms of CPU to create: the deploy makes each one once.
    s3 = session.client("s3")
    cfn = session.client("cloudformation")
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key="poller.zip", Body=package_function())
    cloud = transform(load_template(), parameters, f"s3://{ARTIFACT_BUCKET}/poller.zip", session)

    created_apart: dict[str, str] = {}
    ignored: dict[str, str] = {}
    if _served_apart(session.client("dynamodb"), cfn):
        # The table lives in DynamoDB Local: made there from its definition, referred to by name and ARN.
        for logical_id, table in _take_out(cloud, "AWS::DynamoDB::Table").items():
            name, arn, skipped = create_table(
                session, logical_id, table, cloud=cloud, parameters=parameters, stack_name=stack_name
            )
            _substitute(cloud, logical_id, name, arn)
            created_apart[logical_id] = DYNAMODB_LOCAL
            ignored.update({f"{logical_id}.{prop}": why for prop, why in skipped.items()})

    declared_outputs = dict(cloud.get("Outputs", {}))
    function_urls = _set_aside(cloud, "AWS::Lambda::Url")
    # moto would consume the work queue itself and fail to run the worker (it needs Docker):
    # locally, `runway_archiver.local.queue` plays the SQS event source instead.
    _set_aside(cloud, "AWS::Lambda::EventSourceMapping")

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

    secret_arns, with_secrets = _make_secrets(session, cloud, stack_name, parameters, secret_values)
    for name, output in declared_outputs.items():
        if _ref(output.get("Value")) in secret_arns:
            outputs[name] = secret_arns[output["Value"]["Ref"]]

    _apply_bucket_versioning(s3, cloud, physical)

    lambda_client = session.client("lambda")
    environments: dict[str, dict[str, str]] = {}
    for logical_id, resource in cloud["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        declared = resource["Properties"].get("Environment", {}).get("Variables", {})
        configuration = lambda_client.get_function_configuration(FunctionName=physical[logical_id])
        # moto hands back Number parameters as numbers; Lambda environments are strings.
        environment = {k: str(v) for k, v in configuration.get("Environment", {}).get("Variables", {}).items()}
        _set_secret_arns(environment, declared, secret_arns, with_secrets)
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
    return DeployedStack(
        stack_name, outputs, environments["PollerFunction"], environments, not_created, created_apart, ignored
    )


def _make_secrets(
    session: boto3.session.Session,
    cloud: dict[str, Any],
    stack_name: str,
    parameters: Mapping[str, str],
    secret_values: Mapping[str, str | None],
) -> tuple[dict[str, str], _Resolver]:
    """The stack's secrets (ARN by logical id), and a resolver that knows them, its parameters and conditions.

    moto does not create AWS::SecretsManager::Secret: make them (those whose condition holds), with
    values, as an operator would (a key None: the secret without a value, as a fresh deploy leaves it).
    """
    given = {name: str(p["Default"]) for name, p in cloud.get("Parameters", {}).items() if "Default" in p}
    given.update({**_PSEUDO, "AWS::StackName": stack_name, **parameters})
    conditions = cloud.get("Conditions", {})
    deciding = _Resolver(given, conditions)
    secretsmanager = session.client("secretsmanager")
    secret_arns = {
        logical_id: secretsmanager.create_secret(
            Name=f"{stack_name}-{logical_id}",
            **_secret_string(secret_values.get(logical_id, secrets.token_urlsafe(36))),
        )["ARN"]
        for logical_id, resource in cloud["Resources"].items()
        if resource["Type"] == "AWS::SecretsManager::Secret"
        and ("Condition" not in resource or deciding.condition(resource["Condition"]))
    }
    return secret_arns, _Resolver({**given, **secret_arns}, conditions)


def _set_secret_arns(
    environment: dict[str, str], declared: Mapping[str, Any], secret_arns: Mapping[str, str], resolver: _Resolver
) -> None:
    """A variable naming a secret (Ref, or a choice of one with Fn::If): what CloudFormation would give."""
    for name, value in declared.items():
        if _names_any(value, secret_arns):
            resolved = resolver.resolve(value)
            if resolved is _NO_VALUE:
                environment.pop(name, None)
            else:
                environment[name] = str(resolved)


def _secret_string(value: str | None) -> dict[str, Any]:
    return {} if value is None else {"SecretString": value}


def _apply_bucket_versioning(s3: Any, cloud: dict[str, Any], physical: dict[str, str]) -> None:
    """moto's CloudFormation ignores a bucket's VersioningConfiguration: apply it as S3 would."""
    for logical_id, resource in cloud["Resources"].items():
        status = resource.get("Properties", {}).get("VersioningConfiguration", {}).get("Status")
        if resource["Type"] == "AWS::S3::Bucket" and status and logical_id in physical:
            s3.put_bucket_versioning(Bucket=physical[logical_id], VersioningConfiguration={"Status": status})


def _names_any(value: Any, logical_ids: Mapping[str, str]) -> bool:
    """Whether a template value refers (Ref, anywhere within it) to one of these resources."""
    if isinstance(value, dict):
        return _ref(value) in logical_ids or any(_names_any(v, logical_ids) for v in value.values())
    if isinstance(value, list):
        return any(_names_any(v, logical_ids) for v in value)
    return False


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


# -- the table in DynamoDB Local, from the template's own definition ----------------------------
# What DynamoDB Local accepts but does not do (AWS docs, "DynamoDB local usage notes").
IGNORED_BY_DYNAMODB_LOCAL = {
    "BillingMode": "no capacity modes or limits: throughput is the machine's",
    "ProvisionedThroughput": "no capacity modes or limits: throughput is the machine's",
    "PointInTimeRecoverySpecification": "no point-in-time recovery",
    "SSESpecification": "no encryption at rest",
    "ContributorInsightsSpecification": "no CloudWatch Contributor Insights",
    "Tags": "no tagging",
}
_NO_VALUE = object()
_PSEUDO = {"AWS::Region": REGION, "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}


def dynamodb_apart(session: boto3.session.Session) -> bool:
    """Whether DynamoDB is served by another engine than CloudFormation (AWS_ENDPOINT_URL_DYNAMODB)."""
    return _served_apart(session.client("dynamodb"), session.client("cloudformation"))


def _served_apart(dynamodb_client: Any, cloudformation_client: Any) -> bool:
    dynamodb = urlparse(dynamodb_client.meta.endpoint_url).netloc
    cloudformation = urlparse(cloudformation_client.meta.endpoint_url).netloc
    return dynamodb != cloudformation and not dynamodb.endswith(".amazonaws.com")


def create_table(
    session: boto3.session.Session,
    logical_id: str,
    resource: dict[str, Any],
    *,
    cloud: dict[str, Any],
    parameters: Mapping[str, str],
    stack_name: str,
) -> tuple[str, str, dict[str, str]]:
    """Create an AWS::DynamoDB::Table as CloudFormation would; return its name, ARN and what was ignored."""
    given = {name: str(p["Default"]) for name, p in cloud.get("Parameters", {}).items() if "Default" in p}
    given.update({**_PSEUDO, "AWS::StackName": stack_name, **parameters})
    props: dict[str, Any] = _Resolver(given, cloud.get("Conditions", {})).resolve(resource.get("Properties", {}))
    # CloudFormation's own pattern for a table it names: stack, logical id, a random suffix.
    name = props.pop("TableName", None) or f"{stack_name}-{logical_id}-{secrets.token_hex(6).upper()}"
    ttl = props.pop("TimeToLiveSpecification", None)
    request, ignored = _create_table_request(name, props)
    dynamodb = session.client("dynamodb")
    arn: str = dynamodb.create_table(**request)["TableDescription"]["TableArn"]
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )
    return name, arn, ignored


def _create_table_request(name: str, props: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """CreateTable's arguments from the resource's (resolved) properties, and the properties left out."""
    request: dict[str, Any] = {"TableName": name}
    for key in ("AttributeDefinitions", "KeySchema", "BillingMode", "ProvisionedThroughput", "TableClass"):
        if key in props:
            request[key] = props.pop(key)
    ignored: dict[str, str] = {}
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        indexes = props.pop(key, [])
        for index in indexes:
            for extra in sorted(set(index) - {"IndexName", "KeySchema", "Projection", "ProvisionedThroughput"}):
                ignored[f"{key}.{index['IndexName']}.{extra}"] = "not applied by the local deploy"
        if indexes:
            request[key] = [
                {k: v for k, v in i.items() if k in ("IndexName", "KeySchema", "Projection")} for i in indexes
            ]
    if "StreamSpecification" in props:
        view = props.pop("StreamSpecification")["StreamViewType"]
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view}
    ignored.update({key: IGNORED_BY_DYNAMODB_LOCAL.get(key, "not applied by the local deploy") for key in props})
    for key in ("BillingMode", "ProvisionedThroughput"):  # passed on, accepted, and without effect
        if key in request:
            ignored[key] = IGNORED_BY_DYNAMODB_LOCAL[key]
    return request, ignored


class _Resolver:
    """The intrinsic functions a resource's properties may use, resolved as CloudFormation would."""

    def __init__(self, values: Mapping[str, str], conditions: Mapping[str, Any]) -> None:
        self.values = values
        self.conditions = conditions

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        key = next(iter(value), "")
        if len(value) == 1 and (key == "Ref" or key.startswith("Fn::")):
            return self._intrinsic(key, value[key])
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not _NO_VALUE}

    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return _NO_VALUE if arg == "AWS::NoValue" else self._value(arg)
        if key == "Fn::If":
            return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
        if key == "Fn::Sub" and isinstance(arg, str):
            return re.sub(r"\$\{([^}!]+)\}", lambda m: self._value(m.group(1)), arg)
        raise EmbeddedAwsError(f"the local deploy cannot resolve {key} in a table's definition")

    def condition(self, expression: Any) -> bool:
        if isinstance(expression, str):
            return self.condition(self.conditions[expression])
        ((key, arg),) = expression.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            return bool(str(self.resolve(arg[0])) == str(self.resolve(arg[1])))
        if key == "Fn::Not":
            return not self.condition(arg[0])
        if key == "Fn::And":
            return all(self.condition(a) for a in arg)
        if key == "Fn::Or":
            return any(self.condition(a) for a in arg)
        raise EmbeddedAwsError(f"the local deploy cannot evaluate {key} in a condition")

    def _value(self, name: str) -> str:
        if name not in self.values:
            raise EmbeddedAwsError(f"the local deploy cannot resolve {name} in a table's definition")
        return self.values[name]


def _take_out(cloud: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Remove the resources of a type from the template (references to them stay, to be substituted)."""
    taken = {k: v for k, v in cloud["Resources"].items() if v["Type"] == resource_type}
    for logical_id in taken:
        del cloud["Resources"][logical_id]
    return taken


def _substitute(node: Any, logical_id: str, name: str, arn: str) -> Any:
    """Write a resource made outside the stack into what referred to it: Ref, GetAtt Arn, Sub, DependsOn."""
    if isinstance(node, list):
        node[:] = [_substitute(v, logical_id, name, arn) for v in node]
        return node
    if not isinstance(node, dict):
        return node
    if node == {"Ref": logical_id}:
        return name
    if node.get("Fn::GetAtt") in ([logical_id, "Arn"], f"{logical_id}.Arn"):
        return arn
    if len(node) == 1 and "Fn::GetAtt" in node and str(node["Fn::GetAtt"][0]).split(".")[0] == logical_id:
        raise EmbeddedAwsError(f"the local deploy cannot resolve {node} for a table made apart from the stack")
    for key, value in list(node.items()):
        if key == "Fn::Sub":
            text = value if isinstance(value, str) else value[0]
            text = text.replace(f"${{{logical_id}.Arn}}", arn).replace(f"${{{logical_id}}}", name)
            node[key] = text if isinstance(value, str) else [text, _substitute(value[1], logical_id, name, arn)]
        elif key == "DependsOn":
            remaining = [v for v in ([value] if isinstance(value, str) else value) if v != logical_id]
            if remaining:
                node[key] = remaining  # CloudFormation takes a list as well as a string
            else:
                del node[key]
        else:
            node[key] = _substitute(value, logical_id, name, arn)
    return node
