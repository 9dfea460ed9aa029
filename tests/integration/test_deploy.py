"""The first deploy as the README and docs/configuration-and-deployment.md tell it: `make deploy`,
then the key with `make api-key` or the AWS CLI lines, the stack name taken from samconfig.toml
wherever it is needed."""

from __future__ import annotations

import io
import json
import re
import subprocess
import tomllib

import boto3
import pytest
from moto import mock_aws
from scripts import put_api_key

from runway_archiver.local.deploy import load_template
from runway_archiver.local.engines import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
DEPLOYMENT = (REPO_ROOT / "docs/configuration-and-deployment.md").read_text()
SAMCONFIG_STACK = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())["default"]["global"]["parameters"][
    "stack_name"
]


def _deployment_blocks() -> list[str]:
    """The README's three steps, then the docs' AWS CLI way of putting the key."""
    steps = README.split("\n## Deploy in three steps\n", 1)[1].split("\n## ", 1)[0]
    section = DEPLOYMENT.split("\n## Deployment\n", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", steps + section, re.DOTALL)


def _stack_with_a_key_secret(name: str) -> str:
    """A stack named `name` whose ApiKeySecretArn output names an empty secret, as a deploy leaves it."""
    arn = boto3.client("secretsmanager").create_secret(Name=f"{name}-ApiKeySecret")["ARN"]
    template = {
        "Resources": {"CompletionTopic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ApiKeySecretArn": {"Value": arn}},
    }
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return arn


def test_make_api_key_puts_the_key_into_the_secret_of_the_stack_samconfig_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with mock_aws():
        arn = _stack_with_a_key_secret(SAMCONFIG_STACK)
        _stack_with_a_key_secret("another-stack")

        assert put_api_key.main([], stdin=io.StringIO("sk-cometapi-123\n")) == 0

        assert boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"] == "sk-cometapi-123"
        assert f"(stack {SAMCONFIG_STACK})" in capsys.readouterr().out


def test_make_api_key_says_in_one_line_what_to_do_when_there_is_no_stack(capsys: pytest.CaptureFixture[str]) -> None:
    with mock_aws():
        assert put_api_key.main(["--stack", "never-deployed"], stdin=io.StringIO("sk-1\n")) == 1
        assert put_api_key.main([], stdin=io.StringIO("\n")) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors == [
        "make api-key: no stack never-deployed in us-east-1: deploy first (make deploy) or pass STACK=...",
        "make api-key: no key given: paste the API key when asked (or pipe it in)",
    ]


def test_make_api_key_gateway_puts_the_cometapi_key_into_a_provider_runway_stacks_second_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        runway_key = secrets.create_secret(Name="direct-ApiKeySecret", SecretString="runway-key")["ARN"]
        gateway = secrets.create_secret(Name="direct-GatewayApiKeySecret")["ARN"]
        template = {
            "Resources": {"CompletionTopic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {"ApiKeySecretArn": {"Value": runway_key}, "GatewayApiKeySecretArn": {"Value": gateway}},
        }
        boto3.client("cloudformation").create_stack(StackName="direct", TemplateBody=json.dumps(template))
        _stack_with_a_key_secret("through-the-gateway")  # Provider=cometapi: no second secret

        assert put_api_key.main(["--gateway", "--stack", "direct"], stdin=io.StringIO("sk-cometapi-9\n")) == 0
        assert put_api_key.main(["--gateway", "--stack", "through-the-gateway"], stdin=io.StringIO("sk-1\n")) == 1

        assert secrets.get_secret_value(SecretId=gateway)["SecretString"] == "sk-cometapi-9"
        assert secrets.get_secret_value(SecretId=runway_key)["SecretString"] == "runway-key"  # untouched
    captured = capsys.readouterr()
    assert "the gateway's API key is in" in captured.out
    assert captured.err.splitlines() == [
        "make api-key: stack through-the-gateway has no GatewayApiKeySecretArn output: only a Provider=runway "
        "stack has a gateway key secret (its ApiKeySecret is the gateway's key): run make api-key without GATEWAY=1"
    ]


def test_make_deploy_wraps_the_sam_cli_the_makefile_installs_without_guided_prompts() -> None:
    planned = subprocess.run(
        ["make", "-n", "deploy"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    (deploy,) = [line for line in planned if " deploy" in line and "/sam " in line]
    assert ".tools/sam/bin/sam deploy" in deploy  # not a `sam` that is not on PATH
    assert "--guided" not in deploy
    assert any("check_package.py" in line for line in planned[: planned.index(deploy)])  # built first


def test_the_readme_deploy_steps_are_make_targets_and_define_every_variable_they_use() -> None:
    first, by_hand = _deployment_blocks()
    targets = subprocess.run(["make", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for command in re.findall(r"^make ([a-z-]+)", first, re.MULTILINE):
        assert f"make {command} " in targets
    # the AWS CLI way: no stack name written in, no variable used that the block does not set
    assert f"--stack-name {SAMCONFIG_STACK}" not in by_hand
    defined = set(re.findall(r"^([A-Z_]+)=", by_hand, re.MULTILINE)) | set(
        re.findall(r"read -r\w* .*? ([A-Z_]+)", by_hand)
    )
    used = set(re.findall(r"\$\{?([A-Z_]+)", by_hand))
    assert used <= defined, f"used but never set: {used - defined}"


def test_the_readme_stack_name_line_reads_samconfig_as_written() -> None:
    _, by_hand = _deployment_blocks()
    (line,) = [line for line in by_hand.splitlines() if line.startswith("STACK=")]
    stack = subprocess.run(
        ["bash", "-c", f'{line}\nprintf %s "$STACK"'], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert stack == SAMCONFIG_STACK


def test_the_readme_explains_the_guided_function_url_question() -> None:
    functions = load_template()["Resources"]
    public = [
        k
        for k, v in functions.items()
        if v.get("Properties", {}).get("FunctionUrlConfig", {}).get("AuthType") == "NONE"
    ]
    assert public == ["IntakeFunction"]
    flat = " ".join(DEPLOYMENT.split())
    # sam deploy --guided asks this for every function URL without IAM auth; its default (N) aborts
    for function in public:
        assert f"{function} Function Url has no authentication" in flat
    assert "answer **y**" in flat
