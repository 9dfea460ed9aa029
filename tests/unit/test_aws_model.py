"""The policy evaluator the template tests rely on, against the rules of AWS's documentation
(IAM User Guide, "Policy evaluation logic" and "Cross-account policy evaluation logic";
SNS Developer Guide, "Evaluation logic")."""

from __future__ import annotations

import pytest

from tests.aws_model import ACCOUNT, Principal, Request, decide

TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:topic"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/archiver"
SSO_ROLE = f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0a1b"
ALLOW_ALL = ({"Effect": "Allow", "Action": "*", "Resource": "*"},)
NOTHING: tuple[dict[str, object], ...] = ()


def publish(principal: Principal, *, secure: bool = True) -> Request:
    return Request(principal, "sns:Publish", TOPIC, secure_transport=secure)


def test_nothing_allowed_is_denied() -> None:
    assert decide(publish(Principal(ROLE, NOTHING)), []) == "implicitly denied"


def test_within_the_account_an_identity_allow_is_enough() -> None:
    assert decide(publish(Principal(ROLE, ALLOW_ALL)), []) == "allowed"


def test_within_the_account_a_resource_policy_naming_the_role_is_enough() -> None:
    statement = {"Effect": "Allow", "Principal": {"AWS": [ROLE]}, "Action": "sns:Publish", "Resource": TOPIC}
    assert decide(publish(Principal(ROLE, NOTHING)), [statement]) == "allowed"


def test_a_resource_policy_naming_the_account_delegates_to_the_identity_policy() -> None:
    statement = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sns:*"}
    assert decide(publish(Principal(ROLE, NOTHING)), [statement]) == "implicitly denied"
    assert decide(publish(Principal(ROLE, ALLOW_ALL)), [statement]) == "allowed"


def test_an_explicit_deny_beats_every_allow() -> None:
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sns:Publish", "Resource": TOPIC}
    allow = {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "sns:Publish", "Resource": TOPIC}
    assert decide(publish(Principal(ROLE, ALLOW_ALL)), [deny, allow]) == "explicitly denied"


def test_another_account_needs_both_its_identity_policy_and_the_resource_policy() -> None:
    outsider = "arn:aws:iam::999999999999:role/Admin"
    named = {"Effect": "Allow", "Principal": {"AWS": outsider}, "Action": "sns:Publish", "Resource": TOPIC}
    assert decide(publish(Principal(outsider, ALLOW_ALL)), []) == "implicitly denied"
    assert decide(publish(Principal(outsider, NOTHING)), [named]) == "implicitly denied"
    assert decide(publish(Principal(outsider, ALLOW_ALL)), [named]) == "allowed"


@pytest.mark.parametrize(
    ("operator", "value", "denied"),
    [
        ("ArnNotEquals", [SSO_ROLE], False),
        ("ArnNotEquals", [ROLE], True),  # the topic's own Deny: every principal but the listed roles
        ("ArnNotLike", [f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/*"], False),
        ("ArnLike", [f"arn:aws:iam::{ACCOUNT}:role/*"], True),  # * spans the role's path
        ("StringEquals", [ROLE], False),  # the SSO role is not this role
    ],
)
def test_arn_conditions_match_whole_arns_with_wildcards(operator: str, value: list[str], denied: bool) -> None:
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sns:Publish",
        "Resource": TOPIC,
        "Condition": {operator: {"aws:PrincipalArn": value}},
    }
    decision = decide(publish(Principal(SSO_ROLE, ALLOW_ALL)), [deny])
    assert (decision == "explicitly denied") is denied


def test_bool_secure_transport_matches_the_request() -> None:
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": False}}}
    get = "arn:aws:s3:::bucket/key"
    assert decide(Request(Principal(ROLE, ALLOW_ALL), "s3:GetObject", get, secure_transport=False), [deny]) == (
        "explicitly denied"
    )
    assert decide(Request(Principal(ROLE, ALLOW_ALL), "s3:GetObject", get), [deny]) == "allowed"


def test_actions_match_case_insensitively_and_resources_by_wildcard() -> None:
    grant = ({"Effect": "Allow", "Action": "S3:PutObject", "Resource": "arn:aws:s3:::bucket/runway/*"},)
    principal = Principal(ROLE, grant)
    assert decide(Request(principal, "s3:PutObject", "arn:aws:s3:::bucket/runway/t/video.mp4"), []) == "allowed"
    assert decide(Request(principal, "s3:PutObject", "arn:aws:s3:::bucket/other/video.mp4"), []) != "allowed"


def test_what_it_does_not_understand_it_refuses_to_guess() -> None:
    with pytest.raises(NotImplementedError):
        decide(publish(Principal(ROLE, ({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"},))), [])
    odd = {"Effect": "Deny", "Principal": "*", "Action": "*", "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}}}
    with pytest.raises(NotImplementedError):
        decide(publish(Principal(ROLE, ALLOW_ALL)), [odd])
