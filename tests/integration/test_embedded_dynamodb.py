"""The embedded DynamoDB: DynamoDB Local (Amazon's own engine) made from the template's table
definition, its errors one line that says what to do, and the switch back to moto's DynamoDB."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.config import default_user_config

from runway_archiver.local.deploy import DeployedStack, deploy, load_template
from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.local.engines import DYNAMODB_SWITCH, DynamoDBLocal, MotoServer, patched_environ
from tests.support.samples import API_KEY

pytestmark = pytest.mark.slow
TABLE = load_template()["Resources"]["TasksTable"]["Properties"]


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "runway_archiver.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment, **env},
        check=False,
    )


def _deploy_with(dynamodb_local: DynamoDBLocal, parameters: dict[str, str]) -> tuple[DeployedStack, Any]:
    """A stack deployed with these parameters (mock_aws for moto's services), and a DynamoDB client."""
    config: Any = {
        "core": {**default_user_config["core"], "passthrough": {"urls": [re.escape(dynamodb_local.endpoint)]}}
    }
    with patched_environ(dynamodb_local.environment()), mock_aws(config=config):
        stack = deploy(boto3.session.Session(), api_key=API_KEY, stack_name="ttl-stack", parameters=parameters)
    return stack, dynamodb_local.client()


def test_the_table_in_dynamodb_local_is_the_templates_own(
    stack: DeployedStack, dynamodb_local: DynamoDBLocal | None
) -> None:
    if dynamodb_local is None:
        pytest.skip(f"{DYNAMODB_SWITCH}=moto: moto's CloudFormation makes the table")
    # Given the stack deployed into the embedded AWS, the table is DynamoDB Local's, not moto's
    assert stack.created_apart == {"TasksTable": "DynamoDB Local"}
    assert stack.function_environment["TABLE_NAME"] == stack.table_name
    table = dynamodb_local.client().describe_table(TableName=stack.table_name)["Table"]

    # Then its keys, attribute types, both indexes and their projections are the template's
    assert table["KeySchema"] == TABLE["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(TABLE["AttributeDefinitions"], key=str)
    indexes = {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in table["GlobalSecondaryIndexes"]}
    assert indexes == {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in TABLE["GlobalSecondaryIndexes"]}
    # and no TTL, as the template has none by default
    ttl = dynamodb_local.client().describe_time_to_live(TableName=stack.table_name)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "DISABLED"
    # and the deploy says which of the table's properties DynamoDB Local does not honour
    assert set(stack.ignored) == {
        "TasksTable.BillingMode",
        "TasksTable.PointInTimeRecoverySpecification",
        "TasksTable.SSESpecification",
    }


def test_a_ttl_attribute_given_to_the_stack_is_set_on_the_table(
    feed: FeedEmulator, dynamodb_local: DynamoDBLocal | None
) -> None:
    if dynamodb_local is None:
        pytest.skip(f"{DYNAMODB_SWITCH}=moto: moto's CloudFormation makes the table")
    stack, client = _deploy_with(dynamodb_local, {**feed.stack_parameters(), "TtlAttributeName": "expires_at"})
    try:
        ttl = client.describe_time_to_live(TableName=stack.table_name)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    finally:
        client.delete_table(TableName=stack.table_name)


def test_without_java_the_demo_says_how_to_get_it_in_one_line(tmp_path: Path) -> None:
    # Given a machine with no java on PATH (the interpreter is named by its full path)
    done = _cli("demo", "--quiet", PATH=str(tmp_path), **{DYNAMODB_SWITCH: "local"})

    # Then the demo stops at once with one line saying what to install, or how to do without
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "apt-get install openjdk-17-jre-headless" in lines[0]
    assert f"{DYNAMODB_SWITCH}=moto" in lines[0]


def test_an_unknown_engine_is_one_clear_line() -> None:
    done = _cli("demo", "--quiet", **{DYNAMODB_SWITCH: "dynalite"})
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"runway-archiver: {DYNAMODB_SWITCH} is 'dynalite': set it to 'local' (DynamoDB Local) or 'moto'"
    )


def test_the_switch_falls_back_to_motos_dynamodb(feed: FeedEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the documented switch
    monkeypatch.setenv(DYNAMODB_SWITCH, "moto")

    # When the embedded AWS starts and the template is deployed into it
    with MotoServer() as moto, patched_environ(moto.environment()):
        stack = deploy(boto3.session.Session(), api_key=API_KEY, parameters=feed.stack_parameters())

        # Then no DynamoDB Local runs: moto's CloudFormation made the table, in moto
        assert moto.dynamodb is None
        assert "AWS_ENDPOINT_URL_DYNAMODB" not in moto.environment()
        assert stack.created_apart == {}
        assert stack.ignored == {}
        assert stack.table_name in boto3.client("dynamodb").list_tables()["TableNames"]
        assert boto3.client("dynamodb").meta.endpoint_url == moto.endpoint
