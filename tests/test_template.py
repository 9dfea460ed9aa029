"""template.yaml holds its promises: the archiver's contract (docs/contract.md) and the production hardening.

Some of these properties cannot be checked by deploying into moto (it skips bucket and topic
policies, alarms, event-invoke configs and Scheduler schedules): they are asserted here, on the
template as written and as the SAM transform expands it, so a regression fails CI.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runway_archiver.local.deploy import DeployedStack, deploy, load_template, transform
from runway_archiver.local.engines import FAKE_CREDENTIALS, REPO_ROOT

from .aws_model import ACCOUNT, Principal, Request, Stack, decide, rules_refusing

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
SUPPORTED_PYTHON_RUNTIMES = {"python3.11", "python3.12", "python3.13"}
ALARM_ACTIONS_WHEN_CONFIGURED = {
    "Fn::If": [
        "NotifiesAlarms",
        [{"Fn::If": ["UsesGivenAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "AlarmTopic"}]}],
        {"Ref": "AWS::NoValue"},
    ]
}


def props(logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = RESOURCES[logical_id].get("Properties", {})
    return properties


def of_type(resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in RESOURCES.items() if v["Type"] == resource_type}


def environment(function: str) -> dict[str, Any]:
    variables: dict[str, Any] = dict(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    variables.update(props(function).get("Environment", {}).get("Variables", {}))
    return variables


@pytest.fixture(scope="module")
def expanded() -> dict[str, Any]:
    """The template after the SAM transform, as CloudFormation receives it."""
    with pytest.MonkeyPatch.context() as environment, mock_aws():
        for name, value in FAKE_CREDENTIALS.items():
            environment.setenv(name, value)
        return transform(load_template(), {}, "s3://artifacts/code.zip", boto3.session.Session())


# -- the archiver's contract ----------------------------------------------------------------------


def test_the_contract_resources_and_parameters_are_declared() -> None:
    assert RESOURCES["TasksTable"]["Type"] == "AWS::DynamoDB::Table"
    assert RESOURCES["ArchiveBucket"]["Type"] == "AWS::S3::Bucket"
    assert RESOURCES["CompletionTopic"]["Type"] == "AWS::SNS::Topic"
    assert RESOURCES["ApiKeySecret"]["Type"] == "AWS::SecretsManager::Secret"
    assert RESOURCES["PollerFunction"]["Type"] == "AWS::Serverless::Function"
    assert TEMPLATE["Parameters"]["CometApiBaseUrl"]["Default"] == "https://api.cometapi.com"
    assert TEMPLATE["Parameters"]["AllowedPrivateNetworks"]["Default"] == ""
    table = props("TasksTable")
    assert table["KeySchema"] == [{"AttributeName": "task_id", "KeyType": "HASH"}]
    assert {"AttributeName": "task_id", "AttributeType": "S"} in table["AttributeDefinitions"]


def test_the_provider_is_a_choice_and_cometapi_stays_the_default() -> None:
    parameters = TEMPLATE["Parameters"]
    assert parameters["Provider"]["Default"] == "cometapi"
    assert parameters["Provider"]["AllowedValues"] == ["cometapi", "runway"]
    assert parameters["RunwayApiBaseUrl"]["Default"] == "https://api.dev.runwayml.com"
    for function in ("PollerFunction", "WorkerFunction"):
        variables = environment(function)
        assert variables["PROVIDER"] == {"Ref": "Provider"}
        assert variables["RUNWAY_API_BASE_URL"] == {"Ref": "RunwayApiBaseUrl"}
        assert variables["COMETAPI_BASE_URL"] == {"Ref": "CometApiBaseUrl"}


def test_the_api_key_is_never_in_the_template() -> None:
    secret = props("ApiKeySecret")
    assert "SecretString" not in secret
    assert "GenerateSecretString" not in secret  # the operator puts the bare key after deploy


@pytest.mark.parametrize("provider", ["cometapi", "runway"])
def test_a_provider_runway_stack_holds_the_gateways_key_in_a_second_secret_its_functions_alone_read(
    expanded: dict[str, Any], provider: str
) -> None:
    """One stack, every provider: with Provider=runway, ApiKeySecret is Runway's key and
    GatewayApiKeySecret (made then only, with its output) the gateway's; the poller and the worker
    may read exactly the secrets the stack made, the callback function neither."""
    stack = Stack(expanded, {"Provider": provider})
    resources = stack.resources()
    direct = provider == "runway"
    assert ("GatewayApiKeySecret" in resources) is direct
    assert "SecretString" not in TEMPLATE["Resources"]["GatewayApiKeySecret"]["Properties"]
    assert TEMPLATE["Outputs"]["GatewayApiKeySecretArn"] == {
        "Condition": "AsksRunwayDirectly",
        "Description": TEMPLATE["Outputs"]["GatewayApiKeySecretArn"]["Description"],
        "Value": {"Ref": "GatewayApiKeySecret"},
    }
    described = " ".join(str(resources["ApiKeySecret"]["Properties"]["Description"]).split())
    assert described.startswith("Runway API key" if direct else "CometAPI key"), described  # whose key to put
    api_key = str(stack.ref("ApiKeySecret"))
    gateway = str(Stack(expanded, {"Provider": "runway"}).ref("GatewayApiKeySecret"))
    assert api_key != gateway
    for function, role in (("PollerFunction", "PollerFunctionRole"), ("WorkerFunction", "WorkerFunctionRole")):
        variables = resources[function]["Properties"]["Environment"]["Variables"]
        assert variables["API_KEY_SECRET_ARN"] == api_key
        assert variables["GATEWAY_API_KEY_SECRET_ARN"] == (gateway if direct else "")
        reader = _principal(stack, role)
        assert decide(Request(reader, "secretsmanager:GetSecretValue", api_key), []) == "allowed"
        expected = "allowed" if direct else "implicitly denied"
        assert decide(Request(reader, "secretsmanager:GetSecretValue", gateway), []) == expected, role
    intake = _principal(stack, "IntakeFunctionRole")
    for secret in (api_key, gateway):
        assert decide(Request(intake, "secretsmanager:GetSecretValue", secret), []) == "implicitly denied"


def test_outputs_name_what_operators_need() -> None:
    outputs = TEMPLATE["Outputs"]
    assert outputs["TasksTableName"]["Value"] == {"Ref": "TasksTable"}
    assert outputs["ArchiveBucketName"]["Value"] == {"Ref": "ArchiveBucket"}
    assert outputs["CompletionTopicArn"]["Value"] == {"Ref": "CompletionTopic"}
    assert outputs["ApiKeySecretArn"]["Value"] == {"Ref": "ApiKeySecret"}
    assert outputs["PollerFunctionName"]["Value"] == {"Ref": "PollerFunction"}


# -- functions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("function", ["PollerFunction", "WorkerFunction", "IntakeFunction"])
def test_functions_run_a_supported_python_on_arm64_with_tracing_and_kept_logs(function: str) -> None:
    defaults = TEMPLATE["Globals"]["Function"]
    assert props(function).get("Runtime", defaults["Runtime"]) in SUPPORTED_PYTHON_RUNTIMES
    assert props(function).get("Architectures", defaults["Architectures"]) == ["arm64"]
    assert props(function).get("Tracing", defaults["Tracing"]) == "Active"
    variables = environment(function)
    assert variables["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}  # one metric series per stack
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "RunwayArchiver"
    log_group = props(function)["LoggingConfig"]["LogGroup"]["Ref"]
    assert RESOURCES[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert props(log_group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("function", ["PollerFunction", "WorkerFunction", "IntakeFunction"])
def test_each_log_group_exists_before_its_function_writes(expanded: dict[str, Any], function: str) -> None:
    # Lambda creates /aws/lambda/<function> itself on a first invocation if nothing else has: a
    # log group named after the function is created after it, and a tick in between makes the
    # stack's create fail with "already exists". The group must not depend on the function, and
    # the function must write to it (LoggingConfig.LogGroup), which also orders it first.
    resources = expanded["Resources"]
    (log_group,) = _references(resources[function]["Properties"]["LoggingConfig"]["LogGroup"])
    assert resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert not {function, *_references(resources[function])} & _all_dependencies(resources, log_group) - {log_group}
    name = Stack(expanded, name="prod").resolve(resources[log_group]["Properties"]["LogGroupName"])
    assert name.startswith("/aws/lambda/prod/")  # still found where Lambda logs are looked for


def _references(value: Any) -> set[str]:
    """Logical ids a template fragment refers to (Ref, Fn::GetAtt, Fn::Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _references(item)
    elif isinstance(value, dict):
        for key, argument in value.items():
            if key == "Ref" and isinstance(argument, str) and not argument.startswith("AWS::"):
                found.add(argument)
            elif key == "Fn::GetAtt":
                found.add(argument[0] if isinstance(argument, list) else argument.split(".")[0])
            elif key == "Fn::Sub":
                text = argument if isinstance(argument, str) else argument[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text) if not m.startswith("AWS::")}
                found |= _references(argument[1] if isinstance(argument, list) else [])
            else:
                found |= _references(argument)
    return found


def _all_dependencies(resources: dict[str, Any], logical_id: str) -> set[str]:
    """Every resource `logical_id` waits for, directly or not (references and DependsOn)."""
    seen: set[str] = set()
    todo = [logical_id]
    while todo:
        current = todo.pop()
        if current in seen or current not in resources:
            continue
        seen.add(current)
        resource = resources[current]
        todo.extend(_references(resource.get("Properties", {})) | set(_as_list(resource.get("DependsOn", []))))
    return seen


def test_the_poller_time_budget_fits_its_timeout_and_its_lease() -> None:
    poller = props("PollerFunction")
    variables = environment("PollerFunction")
    timeout = poller["Timeout"]
    # Claiming stops with CLAIM_CUTOFF left, and a copy started then gets at most MEDIA_COPY.
    assert int(variables["MEDIA_COPY_TIMEOUT_SECONDS"]) < int(variables["CLAIM_CUTOFF_SECONDS"]) + timeout
    assert int(variables["MEDIA_COPY_TIMEOUT_SECONDS"]) <= timeout - int(variables["CLAIM_CUTOFF_SECONDS"])
    # A killed run's claims must free up, but never while the run may still be working.
    assert timeout < int(variables["LEASE_SECONDS"])
    # The schedule gives up on a tick before two more have come: runs cannot pile up.
    schedule = poller["Events"]["Schedule"]["Properties"]
    assert schedule["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 300


def test_overlapping_poller_runs_are_bounded_and_failed_runs_are_parked() -> None:
    poller = props("PollerFunction")
    reserved = poller["ReservedConcurrentExecutions"]["Fn::If"]
    assert reserved[0] == "ReservesConcurrency" and 1 <= reserved[1] <= 2
    assert poller["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": {"Fn::GetAtt": ["PollerDeadLetterQueue", "Arn"]}}
    assert poller["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


def test_the_schedule_is_eventbridge_scheduler_every_minute_and_replayable() -> None:
    schedule = props("PollerFunction")["Events"]["Schedule"]
    assert schedule["Type"] == "ScheduleV2"
    properties = schedule["Properties"]
    assert properties["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert TEMPLATE["Parameters"]["ScheduleExpression"]["Default"] == "rate(1 minute)"
    assert "<aws.scheduler.scheduled-time>" in properties["Input"]
    assert properties["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert properties["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}


def test_a_late_tick_still_runs_on_its_own_time() -> None:
    # A run trusts its event's time only within EVENT_TIME_TOLERANCE_SECONDS of the wall clock. A
    # tick starts at most the Scheduler's retry window plus the async queue's age limit after its
    # time: both together must stay inside, or genuine late ticks would run on the wall clock.
    from runway_archiver_lambda.run import EVENT_TIME_TOLERANCE_SECONDS

    poller = props("PollerFunction")
    scheduler_retries = poller["Events"]["Schedule"]["Properties"]["RetryPolicy"]["MaximumEventAgeInSeconds"]
    async_queue = poller["EventInvokeConfig"]["MaximumEventAgeInSeconds"]
    assert scheduler_retries + async_queue < EVENT_TIME_TOLERANCE_SECONDS


def test_the_schedule_reaches_cloudformation_with_its_retry_policy_and_dead_letter_queue(
    expanded: dict[str, Any],
) -> None:
    schedules = {k: v for k, v in expanded["Resources"].items() if v["Type"] == "AWS::Scheduler::Schedule"}
    assert len(schedules) == 1
    (schedule,) = schedules.values()
    target = schedule["Properties"]["Target"]
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 120}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}


def test_worker_concurrency_bounds_the_load_on_the_feed() -> None:
    (work,) = [p["Properties"] for p in of_type("AWS::Lambda::EventSourceMapping").values()]
    assert work["FunctionName"] == {"Ref": "WorkerFunction"}
    assert work["EventSourceArn"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert work["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "WorkerMaxConcurrency"}}
    assert work["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = props("WorkQueue")
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["WorkDeadLetterQueue", "Arn"]}
    assert queue["VisibilityTimeout"] >= 6 * props("WorkerFunction")["Timeout"]


def test_the_callback_function_is_bounded_and_its_token_generated_at_deploy() -> None:
    callback = props("IntakeFunction")
    reserved = callback["ReservedConcurrentExecutions"]["Fn::If"]
    assert reserved[0] == "ReservesConcurrency" and reserved[1] <= 10
    assert callback["FunctionUrlConfig"] == {"AuthType": "NONE"}  # the token is checked in code
    token = props("CallbackTokenSecret")
    assert "SecretString" not in token
    assert token["GenerateSecretString"]["PasswordLength"] >= 32


# -- data at rest ---------------------------------------------------------------------------


def test_the_tasks_table_is_on_demand_recoverable_encrypted_and_indexed() -> None:
    table = props("TasksTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    assert indexes["status-index"]["KeySchema"] == [{"AttributeName": "status", "KeyType": "HASH"}]
    # browse's grid: ended tasks of a status, newest outcome first, a page at a time; keys only
    assert indexes["recent-index"]["KeySchema"] == [
        {"AttributeName": "status", "KeyType": "HASH"},
        {"AttributeName": "completed_at", "KeyType": "RANGE"},
    ]
    assert indexes["recent-index"]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert RESOURCES["TasksTable"]["DeletionPolicy"] == "Retain"


def test_ttl_is_available_and_off_by_default() -> None:
    assert TEMPLATE["Parameters"]["TtlAttributeName"]["Default"] == ""
    assert TEMPLATE["Conditions"]["HasTtl"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "TtlAttributeName"}, ""]}]}
    assert props("TasksTable")["TimeToLiveSpecification"] == {
        "Fn::If": ["HasTtl", {"AttributeName": {"Ref": "TtlAttributeName"}, "Enabled": True}, {"Ref": "AWS::NoValue"}]
    }


def test_the_archive_bucket_is_private_encrypted_versioned_and_owner_enforced() -> None:
    bucket = props("ArchiveBucket")
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert RESOURCES["ArchiveBucket"]["DeletionPolicy"] == "Retain"


def test_archived_media_move_to_a_cheaper_class_and_open_uploads_are_aborted() -> None:
    rules = {rule["Id"]: rule for rule in props("ArchiveBucket")["LifecycleConfiguration"]["Rules"]}
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    archive = rules["archive-media"]
    assert archive["Prefix"] == {"Fn::Sub": "${KeyPrefix}/"}
    (transition,) = archive["Transitions"]
    assert transition["StorageClass"] == {"Ref": "ArchiveStorageClass"}
    assert transition["TransitionInDays"] == {"Fn::If": ["HasTransition", {"Ref": "ArchiveTransitionDays"}, 30]}
    assert archive["Status"] == {"Fn::If": ["HasTransition", "Enabled", "Disabled"]}
    assert TEMPLATE["Parameters"]["ArchiveTransitionDays"]["Default"] > 0


def test_the_bucket_refuses_requests_without_tls() -> None:
    policy = props("ArchiveBucketPolicy")
    assert policy["Bucket"] == {"Ref": "ArchiveBucket"}
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": False}}
    assert {"Fn::GetAtt": ["ArchiveBucket", "Arn"]} in statement["Resource"]
    assert {"Fn::Sub": "${ArchiveBucket.Arn}/*"} in statement["Resource"]


def test_the_completion_topic_is_encrypted_and_only_the_archiver_publishes() -> None:
    assert props("CompletionTopic")["KmsMasterKeyId"] == "alias/aws/sns"
    policy = props("CompletionTopicPolicy")
    assert policy["Topics"] == [{"Ref": "CompletionTopic"}]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    archiver_roles = [{"Fn::GetAtt": ["PollerFunctionRole", "Arn"]}, {"Fn::GetAtt": ["WorkerFunctionRole", "Arn"]}]
    deny = statements["OnlyTheArchiverPublishes"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sns:Publish")
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": archiver_roles}}
    for statement in statements.values():
        if statement["Effect"] == "Allow" and "sns:Publish" in statement["Action"]:
            assert statement["Principal"] == {"AWS": archiver_roles}


QUEUES = ["WorkQueue", "WorkDeadLetterQueue", "PollerDeadLetterQueue", "ScheduleDeadLetterQueue"]


@pytest.mark.parametrize("queue", QUEUES)
def test_queues_are_encrypted(queue: str) -> None:
    assert props(queue)["SqsManagedSseEnabled"] is True


# -- least privilege --------------------------------------------------------------------------


def _inline_statements(expanded: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    statements: dict[str, list[dict[str, Any]]] = {}
    for logical_id, resource in expanded["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                document = policy["PolicyDocument"]["Statement"]
                statements.setdefault(logical_id, []).extend(document if isinstance(document, list) else [document])
    return statements


def _as_list(value: Any) -> list[Any]:
    """A policy field as a list; a condition (`Fn::If`) contributes both of its branches."""
    if isinstance(value, dict) and "Fn::If" in value:
        _, when_true, when_false = value["Fn::If"]
        return _as_list(when_true) + _as_list(when_false)
    return value if isinstance(value, list) else [value]


def test_no_role_is_granted_wildcard_actions_or_resources(expanded: dict[str, Any]) -> None:
    statements = _inline_statements(expanded)
    assert {"PollerFunctionRole", "WorkerFunctionRole", "IntakeFunctionRole"} <= statements.keys()
    for role, role_statements in statements.items():
        for statement in role_statements:
            for action in _as_list(statement["Action"]):
                assert "*" not in action, f"{role} grants {action}"
            for resource in _as_list(statement["Resource"]):
                assert resource != "*", f"{role} grants {statement['Action']} on every resource"


def _granted(expanded: dict[str, Any], role: str) -> dict[str, list[Any]]:
    """action -> the resources the role's inline policies give it on."""
    grants: dict[str, list[Any]] = {}
    for statement in _inline_statements(expanded)[role]:
        if statement["Effect"] == "Allow":
            for action in _as_list(statement["Action"]):
                grants.setdefault(action, []).extend(_as_list(statement["Resource"]))
    return grants


def test_the_poller_touches_only_its_own_resources(expanded: dict[str, Any]) -> None:
    grants = _granted(expanded, "PollerFunctionRole")
    assert grants["secretsmanager:GetSecretValue"] == [
        {"Ref": "ApiKeySecret"},
        {"Fn::If": ["AsksRunwayDirectly", {"Ref": "GatewayApiKeySecret"}, {"Ref": "AWS::NoValue"}]},
    ]
    assert grants["sns:Publish"] == [{"Ref": "CompletionTopic"}]
    assert grants["s3:PutObject"] == [{"Fn::Sub": "${ArchiveBucket.Arn}/${KeyPrefix}/*"}]
    assert grants["dynamodb:UpdateItem"] == [{"Fn::GetAtt": ["TasksTable", "Arn"]}]
    assert grants["dynamodb:Query"] == [{"Fn::Sub": "${TasksTable.Arn}/index/*"}]
    assert "dynamodb:Scan" not in grants  # discovery is a Query on an index, never a Scan
    assert "s3:DeleteObject" not in grants and "s3:DeleteObjectVersion" not in grants
    # reading is for the copy that re-stamps a multipart upload (a version of its own): its prefix only
    for role in ("PollerFunctionRole", "WorkerFunctionRole"):
        granted = _granted(expanded, role)
        for action in ("s3:GetObject", "s3:GetObjectVersion"):
            assert granted[action] == [{"Fn::Sub": "${ArchiveBucket.Arn}/${KeyPrefix}/*"}], (role, action)


def test_the_callback_function_reads_only_the_callback_token_and_never_publishes(expanded: dict[str, Any]) -> None:
    grants = _granted(expanded, "IntakeFunctionRole")
    assert grants["secretsmanager:GetSecretValue"] == [{"Ref": "CallbackTokenSecret"}]
    assert "sns:Publish" not in grants
    assert "s3:PutObject" not in grants
    assert "dynamodb:UpdateItem" not in grants


# -- alarms ---------------------------------------------------------------------------------


def _alarms() -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in of_type("AWS::CloudWatch::Alarm").items()}


@pytest.mark.parametrize("function", ["PollerFunction", "WorkerFunction"])
def test_function_errors_raise_an_alarm(function: str) -> None:
    (alarm,) = [
        a
        for a in _alarms().values()
        if a.get("MetricName") == "Errors" and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
    ]
    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == ALARM_ACTIONS_WHEN_CONFIGURED


def test_every_dead_letter_queue_has_an_alarm() -> None:
    dead_letter_queues = {k for k in of_type("AWS::SQS::Queue") if "DeadLetter" in k}
    assert dead_letter_queues == {"WorkDeadLetterQueue", "PollerDeadLetterQueue", "ScheduleDeadLetterQueue"}
    watched = {
        a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in _alarms().values()
        if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and a["Threshold"] == 0
        and a["ComparisonOperator"] == "GreaterThanThreshold"
    }
    assert watched == dead_letter_queues


def test_stuck_tasks_raise_an_alarm_on_the_metric_the_code_emits() -> None:
    alarm = _alarms()["TasksStuckAlarm"]
    queries = {m["Id"]: m for m in alarm["Metrics"]}
    metric = queries["age"]["MetricStat"]["Metric"]
    variables = environment("PollerFunction")
    assert metric["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"]
    assert metric["Dimensions"] == [{"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}]
    assert metric["MetricName"] == "OldestPendingTaskAgeSeconds"
    assert "OldestPendingTaskAgeSeconds" in _emitted_metric_names()
    assert queries["minutes"]["Expression"] == "age / 60"
    assert alarm["Threshold"] == {"Ref": "StuckTaskAlarmMinutes"}
    # The slowest polling interval is 10 minutes: a shorter period could miss the oldest task.
    assert queries["age"]["MetricStat"]["Period"] >= 600


def test_alarm_notifications_are_optional() -> None:
    parameters = TEMPLATE["Parameters"]
    assert parameters["AlarmEmail"]["Default"] == "" and parameters["AlarmTopicArn"]["Default"] == ""
    assert RESOURCES["AlarmTopic"]["Condition"] == "CreatesAlarmTopic"
    assert props("AlarmEmailSubscription")["Protocol"] == "email"
    for alarm in _alarms().values():
        assert alarm["AlarmActions"] == ALARM_ACTIONS_WHEN_CONFIGURED


# -- reviewed exceptions and deployment defaults ----------------------------------------------


def test_every_skipped_security_check_says_why() -> None:
    skips = [
        (logical_id, skip)
        for logical_id, resource in RESOURCES.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for logical_id, skip in skips:
        assert skip["id"].startswith("CKV_"), logical_id
        assert len(skip["comment"]) > 40, f"{logical_id} skips {skip['id']} without a reason"


def test_samconfig_deploys_with_sensible_defaults() -> None:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert config["default"]["global"]["parameters"]["stack_name"] == "runway-archiver"
    assert "CAPABILITY_IAM" in deploy["capabilities"]
    assert deploy["confirm_changeset"] is True
    assert "parameter_overrides" not in deploy  # left to the user


@pytest.mark.parametrize(
    "event", ["eventbridge-scheduled.json", "scheduler-input.json", "feed/succeeded.json", "feed/failed.json"]
)
def test_the_sample_events_the_readme_uses_exist(event: str) -> None:
    assert (REPO_ROOT / "events" / event).is_file()
    assert f"events/{event}" in (REPO_ROOT / "docs/configuration-and-deployment.md").read_text()


# -- what moto does not create, and so is asserted above --------------------------------------

NOT_CREATED_BY_MOTO = {
    "AWS::S3::BucketPolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::CloudWatch::Alarm",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Scheduler::Schedule",
    "AWS::SecretsManager::Secret",
    "AWS::Lambda::Permission",  # the function URL's public-invoke grants (the URL is made locally)
}


def test_the_local_deploy_says_what_moto_left_out(stack: DeployedStack) -> None:
    assert set(stack.not_created.values()) == NOT_CREATED_BY_MOTO
    expected = {"ArchiveBucketPolicy", "CompletionTopicPolicy", "TasksStuckAlarm", "ApiKeySecret"}
    assert expected <= stack.not_created.keys()
    # What the archiver's path needs, moto did create (and the integration tests run against it).
    for needed in ("TasksTable", "ArchiveBucket", "CompletionTopic", "PollerFunction", "WorkQueue"):
        assert needed not in stack.not_created


def test_the_local_deploy_reports_what_moto_left_out_without_a_warning_per_deploy() -> None:
    import warnings

    with warnings.catch_warnings(record=True) as caught, mock_aws():
        warnings.simplefilter("always")
        deployed = deploy(boto3.session.Session(), parameters={"CometApiBaseUrl": "http://127.0.0.1:9"})
    assert deployed.not_created  # said here, once, as data
    assert [str(w.message) for w in caught if "moto" in w.filename] == []


def test_the_readme_lists_what_the_local_deploy_leaves_out() -> None:
    readme = (REPO_ROOT / "docs/configuration-and-deployment.md").read_text()
    for resource_type in NOT_CREATED_BY_MOTO:
        assert resource_type in readme


def test_the_package_holds_runtime_code_only() -> None:
    requirements = (REPO_ROOT / "functions/requirements.txt").read_text().lower()
    assert "boto3" not in [line.split(">")[0].split("=")[0].strip() for line in requirements.splitlines()]
    sources = {p.relative_to(REPO_ROOT / "functions").parts[0] for p in (REPO_ROOT / "functions").rglob("*.py")}
    assert sources == {"runway_archiver_lambda"}


# -- the operator's dashboard ---------------------------------------------------------------------

# AWS metrics the dashboard may name, by namespace: the metric names and the dimension naming the
# stack's resource (Lambda and SQS documentation, "metrics" pages).
AWS_METRICS = {
    "AWS/Lambda": ({"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"}, "FunctionName"),
    "AWS/SQS": ({"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"}, "QueueName"),
}


def _emitted_metric_names() -> set[str]:
    """Every metric name the functions' code emits (EMF through Powertools' add_metric)."""
    import re

    from runway_archiver_lambda.summary import RunSummary, summary_metrics

    sources = "\n".join(p.read_text() for p in (REPO_ROOT / "functions/runway_archiver_lambda").rglob("*.py"))
    literal = set(re.findall(r'add_metric\(\s*name="(\w+)"', sources))
    # The run's counters name their metrics where they are declared (RunSummary, metric_field).
    return literal | {metric for metric, _ in summary_metrics(RunSummary).values()}


def _dashboard_widgets() -> list[dict[str, Any]]:
    import json
    import re

    body = props("Dashboard")["DashboardBody"]["Fn::Sub"]
    # Placeholders stay visible as "<<Name>>" so references can be checked; numbers stay numbers.
    numeric = {"StuckTaskAlarmMinutes": "120"}
    text = re.sub(r"\$\{([^}]+)\}", lambda m: numeric.get(m.group(1), f"<<{m.group(1)}>>"), body)
    widgets: list[dict[str, Any]] = json.loads(text)["widgets"]
    return widgets


def _named_metrics(widget: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric name, dimensions) of every metric a widget names, SEARCH expressions too."""
    import re

    named = []
    for row in widget["properties"]["metrics"]:
        if isinstance(row[0], dict):
            search = re.match(r"SEARCH\('\{([^}]*)\} MetricName=\"(\w+)\"(.*)'", row[0]["expression"])
            if search:
                namespace, *dimension_names = search.group(1).split(",")
                filters = dict(re.findall(r'(\w+)="([^"]*)"', search.group(3)))
                named.append((namespace, search.group(2), {d: filters.get(d, "*") for d in dimension_names}))
            continue
        fields = [f for f in row if isinstance(f, str)]
        assert "." not in fields, "spell every metric out: the test reads each row alone"
        namespace, name, *pairs = fields
        named.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return named


def test_the_dashboard_is_on_by_default_and_a_parameter_leaves_it_out() -> None:
    assert RESOURCES["Dashboard"]["Type"] == "AWS::CloudWatch::Dashboard"
    assert TEMPLATE["Parameters"]["CreateDashboard"]["Default"] == "true"
    assert TEMPLATE["Conditions"]["HasDashboard"] == {"Fn::Equals": [{"Ref": "CreateDashboard"}, "true"]}
    assert RESOURCES["Dashboard"]["Condition"] == "HasDashboard"
    output = TEMPLATE["Outputs"]["DashboardUrl"]
    assert output["Condition"] == "HasDashboard"
    assert "#dashboards:name=${Dashboard}" in output["Value"]["Fn::Sub"]


def test_every_dashboard_widget_names_a_metric_the_code_emits_or_one_of_the_stacks_resources() -> None:
    emitted = _emitted_metric_names()
    variables = environment("PollerFunction")
    custom = variables["POWERTOOLS_METRICS_NAMESPACE"]
    seen: set[str] = set()
    for widget in _dashboard_widgets():
        metrics = _named_metrics(widget)
        title = widget["properties"]["title"]
        assert metrics, f"widget {title!r} names no metric"
        assert widget["properties"]["region"] == "<<AWS::Region>>", title
        for namespace, name, dimensions in metrics:
            seen.add(name)
            if namespace == custom:
                assert name in emitted, f"{title!r}: the code emits no metric {name}"
                assert dimensions.get("service") == "<<AWS::StackName>>", title  # the functions' service
                continue
            names, dimension = AWS_METRICS[namespace]
            assert name in names, f"{title!r}: {namespace} has no metric {name} here"
            reference = dimensions[dimension].removeprefix("<<").removesuffix(">>")
            logical_id = reference.split(".")[0]
            expected_type = "AWS::Serverless::Function" if namespace == "AWS/Lambda" else "AWS::SQS::Queue"
            assert RESOURCES[logical_id]["Type"] == expected_type, f"{title!r}: {reference} is not in the stack"
    # What an operator needs on the dashboard: outcomes, bytes, errors, configuration errors, the stuck-task age.
    assert {"TasksArchived", "TasksFailed", "TasksExpired", "BytesArchived", "PollErrors", "ArchiveErrors"} <= seen
    assert {"PublishErrors", "ConfigurationErrors", "OldestPendingTaskAgeSeconds", "Duration", "Callbacks"} <= seen
    assert "ApproximateNumberOfMessagesVisible" in seen


def test_the_dashboard_draws_the_thresholds_the_stack_uses() -> None:
    widgets = {w["properties"]["title"]: w["properties"] for w in _dashboard_widgets()}
    stuck = next(p for t, p in widgets.items() if t.startswith("Oldest pending task"))
    assert stuck["annotations"]["horizontal"][0]["value"] == 120  # the ${StuckTaskAlarmMinutes} placeholder
    assert "${StuckTaskAlarmMinutes}" in props("Dashboard")["DashboardBody"]["Fn::Sub"]
    duration = next(p for t, p in widgets.items() if t.startswith("Run duration"))
    assert duration["annotations"]["horizontal"][0]["value"] == props("PollerFunction")["Timeout"] * 1000
    dead_letter_queues = {k for k in of_type("AWS::SQS::Queue") if "DeadLetter" in k}
    queues = next(p for t, p in widgets.items() if t.startswith("Dead-letter"))
    assert {row[3].strip("<>").split(".")[0] for row in queues["metrics"]} == dead_letter_queues


# -- a first deploy and a first day on a real account ---------------------------------------------
# moto creates no schedule, evaluates no resource policy and knows no quota: these are checked on
# the transformed template, instantiated for given parameters by tests/aws_model.py.

README = (REPO_ROOT / "docs/configuration-and-deployment.md").read_text()  # the page that owns deployment


def _reserved(stack: Stack) -> dict[str, int]:
    return {
        logical_id: int(resource["Properties"]["ReservedConcurrentExecutions"])
        for logical_id, resource in stack.resources().items()
        if resource["Type"] == "AWS::Lambda::Function" and "ReservedConcurrentExecutions" in resource["Properties"]
    }


def test_the_defaults_reserve_no_concurrency_so_any_account_can_deploy(expanded: dict[str, Any]) -> None:
    # Lambda keeps 100 of the account's concurrency unreserved (PutFunctionConcurrency); a new
    # account's quota is often 10 or 50, where any reservation rolls the stack back.
    assert _reserved(Stack(expanded)) == {}
    reserved = _reserved(Stack(expanded, {"ReserveConcurrency": "true"}))
    assert reserved == {"PollerFunction": 2, "IntakeFunction": 10}
    # The deployment page and the parameter state the quota that choice needs.
    needed = 100 + sum(reserved.values())
    assert f"at least {needed}" in " ".join(README.split())
    assert f"{needed} or more" in " ".join(TEMPLATE["Parameters"]["ReserveConcurrency"]["Description"].split())


# Resource types whose physical name is unique per account and region (per schedule group for
# schedules), and the property that sets it; absent, CloudFormation generates a unique one.
NAME_PROPERTIES = {
    "AWS::Scheduler::Schedule": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::IAM::Role": "RoleName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::CloudWatch::Alarm": "AlarmName",
}


def _fixed_names(stack: Stack) -> set[tuple[str, str]]:
    return {
        (resource["Type"], resource["Properties"][NAME_PROPERTIES[resource["Type"]]])
        for resource in stack.resources().values()
        if NAME_PROPERTIES.get(resource["Type"]) in resource["Properties"]
    }


def test_a_second_stack_in_the_same_account_and_region_names_nothing_the_first_did(
    expanded: dict[str, Any],
) -> None:
    staging, prod = Stack(expanded, name="runway-archiver-staging"), Stack(expanded, name="runway-archiver")
    assert _fixed_names(staging).isdisjoint(_fixed_names(prod))
    # the schedule in particular: SAM names it after the event unless told not to
    (schedule,) = [r for r in prod.resources().values() if r["Type"] == "AWS::Scheduler::Schedule"]
    assert "Name" not in schedule["Properties"]
    assert "GroupName" not in schedule["Properties"]  # the default group, shared by every stack


def _custom_metric_services(stack: Stack, namespace: str) -> set[str]:
    """The `service` dimension of every custom metric the stack's alarms and dashboard watch."""
    services: set[str] = set()
    for resource in stack.resources().values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            services |= _alarm_services(resource["Properties"], namespace)
        if resource["Type"] == "AWS::CloudWatch::Dashboard":
            services |= _dashboard_services(resource["Properties"]["DashboardBody"], namespace)
    return services


def _alarm_services(alarm: dict[str, Any], namespace: str) -> set[str]:
    watched = [alarm] + [query["MetricStat"]["Metric"] for query in alarm.get("Metrics", []) if "MetricStat" in query]
    return {
        dimension["Value"]
        for metric in watched
        if metric.get("Namespace") == namespace
        for dimension in metric["Dimensions"]
        if dimension["Name"] == "service"
    }


def _dashboard_services(body: str, namespace: str) -> set[str]:
    import json
    import re

    services: set[str] = set()
    for widget in json.loads(body)["widgets"]:
        for line in widget["properties"].get("metrics", []):
            if line and line[0] == namespace:
                services.add(dict(zip(line[2:-1:2], line[3:-1:2], strict=True))["service"])
            for part in line:
                if isinstance(part, dict) and namespace in part.get("expression", ""):
                    services |= set(re.findall(r'service="([^"]+)"', part["expression"]))
    return services


def test_two_stacks_in_one_account_never_share_a_custom_metric_series(expanded: dict[str, Any]) -> None:
    # Custom metrics live in one namespace per account and region: with one `service` value for
    # every stack, staging's stuck task would fire prod's TasksStuckAlarm. Each stack's functions
    # emit, and its alarms and dashboard watch, the stack's own name; the default stack's series
    # (service=runway-archiver) are the ones it always had.
    namespace = environment("PollerFunction")["POWERTOOLS_METRICS_NAMESPACE"]
    seen = {}
    for name in ("runway-archiver", "runway-archiver-staging"):
        stack = Stack(expanded, name=name)
        functions = [r for r in stack.resources().values() if r["Type"] == "AWS::Lambda::Function"]
        emitted = {f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] for f in functions}
        assert emitted == {name}
        assert _custom_metric_services(stack, namespace) == {name}
        seen[name] = emitted
    assert seen["runway-archiver"].isdisjoint(seen["runway-archiver-staging"])


@pytest.mark.parametrize("days", [1, 7, 29])
def test_standard_ia_before_30_days_is_refused_before_anything_is_created(expanded: dict[str, Any], days: int) -> None:
    # S3: transitions to STANDARD_IA (and ONEZONE_IA) need 30 days; the lifecycle rule would fail
    # mid-create and roll the stack back. A template rule refuses the parameters instead.
    stack = Stack(expanded, {"ArchiveStorageClass": "STANDARD_IA", "ArchiveTransitionDays": str(days)})
    assert rules_refusing(stack) == ["StandardIaNeedsThirtyDays"]


@pytest.mark.parametrize(
    ("storage_class", "days"),
    [("STANDARD_IA", 0), ("STANDARD_IA", 30), ("STANDARD_IA", 31), ("STANDARD_IA", 365)]
    + [(c, d) for c in ("INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE") for d in (0, 1, 29, 30)],
)
def test_every_other_storage_class_and_delay_deploys(expanded: dict[str, Any], storage_class: str, days: int) -> None:
    assert storage_class in TEMPLATE["Parameters"]["ArchiveStorageClass"]["AllowedValues"]
    stack = Stack(expanded, {"ArchiveStorageClass": storage_class, "ArchiveTransitionDays": str(days)})
    assert rules_refusing(stack) == []


def test_no_function_is_granted_an_action_it_never_calls(expanded: dict[str, Any]) -> None:
    # Only the callback function reads an item (TaskStore.get); the poller and the worker update only.
    sources = {p.name: p.read_text() for p in (REPO_ROOT / "functions/runway_archiver_lambda").rglob("*.py")}
    assert [name for name, text in sources.items() if ".get(task_id)" in text] == ["callbacks.py"]
    for role in ("PollerFunctionRole", "WorkerFunctionRole"):
        assert "dynamodb:GetItem" not in _granted(expanded, role), role


@pytest.mark.parametrize("prefix", ["runway", "media"])
def test_the_key_prefix_drives_the_code_the_grant_and_the_lifecycle_alike(
    expanded: dict[str, Any], prefix: str
) -> None:
    stack = Stack(expanded, {"KeyPrefix": prefix})
    resources = stack.resources()
    bucket_arn = stack.get_att("ArchiveBucket", "Arn")
    for function, role in (("PollerFunction", "PollerFunctionRole"), ("WorkerFunction", "WorkerFunctionRole")):
        assert resources[function]["Properties"]["Environment"]["Variables"]["KEY_PREFIX"] == prefix
        writer = _principal(stack, role)
        for action in ("s3:PutObject", "s3:GetObjectVersion"):
            assert decide(Request(writer, action, f"{bucket_arn}/{prefix}/t-1/video.mp4"), []) == "allowed"
            assert decide(Request(writer, action, f"{bucket_arn}/elsewhere/t-1/video.mp4"), []) != "allowed"
    rules = {r["Id"]: r for r in resources["ArchiveBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["archive-media"]["Prefix"] == f"{prefix}/"


def test_the_worker_may_read_its_work_queue_and_no_other(expanded: dict[str, Any]) -> None:
    stack = Stack(expanded)
    role = stack.resources()["WorkerFunctionRole"]["Properties"]
    # SAM's SQS event attaches AWSLambdaSQSQueueExecutionRole (sqs:ReceiveMessage on "*"): the
    # managed policies left are CloudWatch Logs and X-Ray only.
    assert sorted(role["ManagedPolicyArns"]) == [
        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    ]
    worker = _principal(stack, "WorkerFunctionRole")
    queue = stack.get_att("WorkQueue", "Arn")
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert decide(Request(worker, action, queue), []) == "allowed"
        assert decide(Request(worker, action, queue.replace(queue.split(":")[-1], "someone-elses")), []) != "allowed"
    (trigger,) = [r for r in stack.resources().values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert trigger["Properties"]["EventSourceArn"] == queue


def test_a_configuration_error_raises_an_alarm_within_minutes() -> None:
    alarm = _alarms()["ConfigurationErrorsAlarm"]
    variables = environment("PollerFunction")
    assert alarm["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}]
    # the metric the code emits (tests/integration/test_errors_and_claims.py: 1 per run that meets one)
    assert alarm["MetricName"] == "ConfigurationErrors"
    assert "ConfigurationErrors" in _emitted_metric_names()
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarm["Period"] * alarm["EvaluationPeriods"] <= 300  # not the stuck-tasks alarm's two hours
    assert alarm["AlarmActions"] == ALARM_ACTIONS_WHEN_CONFIGURED


def test_the_readme_warns_that_alarms_never_reach_a_topic_on_the_aws_managed_key() -> None:
    (row,) = [line for line in README.splitlines() if line.startswith("| `AlarmTopicArn` |")]
    assert "alias/aws/sns" in row and "customer-managed" in row and "cloudwatch.amazonaws.com" in row
    description = " ".join(TEMPLATE["Parameters"]["AlarmTopicArn"]["Description"].split())
    assert "alias/aws/sns" in description and "customer-managed" in description


# -- who may do what: the docs' table, evaluated against the transformed policies ----------------

ALLOW_EVERYTHING = ({"Effect": "Allow", "Action": "*", "Resource": "*"},)


def _principal(stack: Stack, role: str) -> Principal:
    """A function role as IAM sees it: its ARN and its inline policies, resolved."""
    properties = stack.resources()[role]["Properties"]
    statements = [
        s for policy in properties.get("Policies", []) for s in _as_list(policy["PolicyDocument"]["Statement"])
    ]
    return Principal(stack.get_att(role, "Arn"), tuple(statements))


def _who(stack: Stack, name: str) -> Principal:
    if name == "operator":  # an IAM Identity Center administrator: a role with a path, allowed everything
        sso = f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_AdministratorAccess_0a1b2c3d"
        return Principal(sso, ALLOW_EVERYTHING)
    if name == "outsider":  # another account's administrator
        return Principal("arn:aws:iam::999999999999:role/Administrator", ALLOW_EVERYTHING)
    return _principal(
        stack, {"poller": "PollerFunctionRole", "worker": "WorkerFunctionRole"}.get(name, "IntakeFunctionRole")
    )


def _readme_access_table() -> list[list[str]]:
    section = README.split("### Who may do what", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= 10
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in rows]


@pytest.mark.parametrize("row", _readme_access_table(), ids=lambda row: " ".join(row[:3]))
def test_who_may_do_what_is_what_the_readme_says(expanded: dict[str, Any], row: list[str]) -> None:
    who, action, target, transport, answer = row
    stack = Stack(expanded)
    resources = stack.resources()
    bucket_arn = stack.get_att("ArchiveBucket", "Arn")
    prefix = stack.values["KeyPrefix"]
    resource, policies = {
        "topic": (stack.ref("CompletionTopic"), resources["CompletionTopicPolicy"]["Properties"]),
        "media": (f"{bucket_arn}/{prefix}/t-1/video.mp4", resources["ArchiveBucketPolicy"]["Properties"]),
        "outside the prefix": (f"{bucket_arn}/elsewhere/video.mp4", resources["ArchiveBucketPolicy"]["Properties"]),
        "table": (stack.get_att("TasksTable", "Arn"), {"PolicyDocument": {"Statement": []}}),  # no resource policy
    }[target]
    request = Request(_who(stack, who), action, resource, secure_transport=transport == "TLS")
    decision = decide(request, _as_list(policies["PolicyDocument"]["Statement"]))
    assert (decision == "allowed") == answer.startswith("allowed"), f"the docs say {answer}, the policies: {decision}"
