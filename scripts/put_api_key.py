"""Put an API key into a deployed stack's secret (what `make api-key` runs).

Without --gateway: the key of the stack's Provider (CometAPI's; Runway's with Provider=runway) into
ApiKeySecret. With --gateway: the CometAPI key into GatewayApiKeySecret, which a Provider=runway
stack makes for every other model family (`make api-key GATEWAY=1`).

The stack is the one `sam deploy` used: `--stack`, else `stack_name` in samconfig.toml. The key is
read from the terminal without echo (or one line from stdin when it is not a terminal), never
from the command line, so it stays out of the shell's history and the process list.

Usage: python scripts/put_api_key.py [--gateway] [--stack NAME] [--region R] [--profile P] < key.txt
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from runway_archiver.stack.archive import default_stack_name

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
PROG = "make api-key"


def read_key(stdin: TextIO, what: str = "API key") -> str:
    if stdin.isatty():
        return getpass.getpass(f"{what} (not shown): ").strip()
    return stdin.readline().strip()


def put_api_key(session: boto3.session.Session, stack_name: str, key: str, *, gateway: bool = False) -> str:
    """Store `key` as the stack's ApiKeySecret value (GatewayApiKeySecret with `gateway`); return its ARN."""
    stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    if "ApiKeySecretArn" not in outputs:
        raise LookupError(f"stack {stack_name} has no ApiKeySecretArn output: is it a runway-archiver stack?")
    output = "GatewayApiKeySecretArn" if gateway else "ApiKeySecretArn"
    if output not in outputs:
        raise LookupError(
            f"stack {stack_name} has no {output} output: only a Provider=runway stack has a gateway key secret "
            "(its ApiKeySecret is the gateway's key): run make api-key without GATEWAY=1"
        )
    session.client("secretsmanager").put_secret_value(SecretId=outputs[output], SecretString=key)
    return outputs[output]


def main(argv: Sequence[str] | None = None, stdin: TextIO = sys.stdin) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--stack", help="the stack (default: stack_name in samconfig.toml)")
    parser.add_argument("--region", help="AWS region (default: the AWS CLI's)")
    parser.add_argument("--profile", help="AWS named profile")
    parser.add_argument(
        "--gateway",
        action="store_true",
        help="put the CometAPI key in GatewayApiKeySecret (a Provider=runway stack's key for every other family)",
    )
    args = parser.parse_args(argv)
    stack_name = args.stack or default_stack_name(REPO_ROOT)
    what = "gateway's CometAPI key" if args.gateway else "API key"
    key = read_key(stdin, what)
    if not key:
        print(f"{PROG}: no key given: paste the {what} when asked (or pipe it in)", file=sys.stderr)
        return 1
    try:
        session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
        arn = put_api_key(session, stack_name, key, gateway=args.gateway)
    except (ClientError, BotoCoreError, LookupError) as exc:
        message = str(exc)
        if isinstance(exc, ClientError) and "does not exist" in message:
            message = f"no stack {stack_name} in {session.region_name}: deploy first (make deploy) or pass STACK=..."
        print(f"{PROG}: {message}", file=sys.stderr)
        return 1
    which = "the gateway's API key" if args.gateway else "the API key"
    print(f"{which} is in {arn} (stack {stack_name}); the next run uses it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
