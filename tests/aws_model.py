"""What moto does not evaluate, modelled from AWS's documentation for the template's own use.

- `Stack`: the transformed template instantiated as CloudFormation would for given parameters:
  conditions decided, `Fn::If` / `Ref` / `Fn::GetAtt` / `Fn::Sub` / `Fn::Join` resolved, resources
  whose condition is false left out, physical names and ARNs made up in AWS's formats.
- `decide`: IAM policy evaluation for one request within or across accounts (IAM User Guide,
  "Policy evaluation logic"): an explicit Deny in any applicable policy wins; within the account,
  an Allow in the identity policy or in a resource policy naming the principal is enough; from
  another account both are needed. Only what the template uses is understood (Allow/Deny,
  Principal "*" / {"AWS": ...}, Action and Resource with wildcards, and the condition operators
  below); anything else raises rather than guess.
- `rule_holds`: the template's Rules (Fn::Contains, Fn::Equals, Fn::Not, Fn::And, Fn::Or).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
NO_VALUE = object()


def _wildcard(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    # IAM wildcards are * and ?; fnmatch would also read [..] as a set, which IAM does not.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


@dataclass
class Stack:
    """A transformed template as deployed with `parameters` in ACCOUNT/REGION."""

    template: dict[str, Any]
    parameters: dict[str, str] = field(default_factory=dict)
    name: str = "archive"

    def __post_init__(self) -> None:
        declared = self.template.get("Parameters", {})
        unknown = set(self.parameters) - set(declared)
        assert not unknown, f"no such parameters: {unknown}"
        self.values = {k: str(self.parameters.get(k, spec.get("Default", ""))) for k, spec in declared.items()}
        self.pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::StackName": self.name,
            "AWS::URLSuffix": "amazonaws.com",
        }

    # -- conditions ---------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        return self._truth(self.template["Conditions"][name])

    def _truth(self, expression: Any) -> bool:
        ((function, argument),) = expression.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (str(self.resolve(a)) for a in argument)
            return left == right
        if function == "Fn::Not":
            return not self._truth(argument[0])
        if function == "Fn::And":
            return all(self._truth(a) for a in argument)
        if function == "Fn::Or":
            return any(self._truth(a) for a in argument)
        raise NotImplementedError(function)

    # -- resources ----------------------------------------------------------------------------
    def resources(self) -> dict[str, dict[str, Any]]:
        """Every resource CloudFormation would create, its properties resolved."""
        return {
            logical_id: {"Type": resource["Type"], "Properties": self.resolve(resource.get("Properties", {}))}
            for logical_id, resource in self.template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    def physical_name(self, logical_id: str) -> str:
        return f"{self.name}-{logical_id}-1A2B3C4D5E6F"

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            return self.values[name]
        kind = self.template["Resources"][name]["Type"]
        physical = self.physical_name(name)
        return {
            "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{physical}",
            "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{physical}-AbCdEf",
            "AWS::SQS::Queue": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}",
            "AWS::S3::Bucket": physical.lower(),
        }.get(kind, physical)

    def get_att(self, name: str, attribute: str) -> str:
        kind = self.template["Resources"][name]["Type"]
        physical = self.physical_name(name)
        arns = {
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{physical}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{physical.lower()}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{physical}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{physical}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}",
            "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{physical}",
        }
        if attribute == "Arn":
            return arns[kind]
        if attribute == "QueueName":
            return physical
        return f"{physical}.{attribute}"

    def resolve(self, value: Any) -> Any:  # noqa: PLR0911 - one return per intrinsic function
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                name, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(name, attribute)
            if key == "Fn::If":
                condition, when_true, when_false = argument
                return self.resolve(when_true if self.condition(condition) else when_false)
            if key == "Fn::Sub":
                return self._sub(*(argument if isinstance(argument, list) else [argument, {}]))
            if key == "Fn::Join":
                separator, parts = argument
                return separator.join(str(p) for p in self.resolve(parts))
            if key.startswith("Fn::"):
                raise NotImplementedError(key)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return self.get_att(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)


# -- policies -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    """Who asks: an IAM role (its ARN, as aws:PrincipalArn) and what its identity policies allow."""

    arn: str
    identity_statements: tuple[dict[str, Any], ...]

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]


@dataclass(frozen=True)
class Request:
    principal: Principal
    action: str
    resource: str
    secure_transport: bool = True

    def context(self) -> dict[str, str]:
        return {
            "aws:PrincipalArn": self.principal.arn,
            "aws:PrincipalAccount": self.principal.account,
            "aws:SecureTransport": "true" if self.secure_transport else "false",
        }


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(conditions: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    for operator, tests in conditions.items():
        for key, wanted in tests.items():
            present = context.get(key)
            values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _listed(wanted)]
            if operator in ("ArnEquals", "StringEquals"):
                holds = present is not None and present in values
            elif operator in ("ArnLike", "StringLike"):
                holds = present is not None and any(_wildcard(v, present) for v in values)
            elif operator in ("ArnNotEquals", "StringNotEquals"):
                holds = present is None or present not in values
            elif operator in ("ArnNotLike", "StringNotLike"):
                holds = present is None or not any(_wildcard(v, present) for v in values)
            elif operator == "Bool":
                holds = present is not None and present.lower() in [v.lower() for v in values]
            else:
                raise NotImplementedError(f"condition operator {operator}")
            if not holds:
                return False
    return True


def _applies(statement: dict[str, Any], request: Request, *, resource_policy: bool) -> bool:
    for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
        if unsupported in statement:
            raise NotImplementedError(unsupported)
    if resource_policy and not _principal_matches(statement["Principal"], request.principal):
        return False
    if not any(_wildcard(a, request.action, case_sensitive=False) for a in _listed(statement["Action"])):
        return False
    if not any(_wildcard(r, request.resource) for r in _listed(statement.get("Resource", "*"))):
        return False
    return _condition_holds(statement.get("Condition", {}), request.context())


def _principal_matches(principal: Any, who: Principal) -> bool:
    if principal in ("*", {"AWS": "*"}):
        return True
    if not isinstance(principal, dict) or set(principal) - {"AWS"}:
        raise NotImplementedError(f"principal {principal}")
    return any(p in (who.arn, who.account, f"arn:aws:iam::{who.account}:root") for p in _listed(principal["AWS"]))


def _grants_by_itself(principal: Any, who: Principal) -> bool:
    """A resource policy naming the principal itself grants; naming its account delegates to IAM."""
    return principal == "*" or who.arn in _listed(principal.get("AWS", []) if isinstance(principal, dict) else [])


def decide(request: Request, resource_statements: list[dict[str, Any]], resource_account: str = ACCOUNT) -> str:
    """'allowed', 'explicitly denied' or 'implicitly denied'."""
    identity = [s for s in request.principal.identity_statements if _applies(s, request, resource_policy=False)]
    resource = [s for s in resource_statements if _applies(s, request, resource_policy=True)]
    if any(s["Effect"] == "Deny" for s in identity + resource):
        return "explicitly denied"
    identity_allows = any(s["Effect"] == "Allow" for s in identity)
    resource_allows = [s for s in resource if s["Effect"] == "Allow"]
    if request.principal.account == resource_account:
        if identity_allows or any(_grants_by_itself(s["Principal"], request.principal) for s in resource_allows):
            return "allowed"
    elif identity_allows and resource_allows:
        return "allowed"
    return "implicitly denied"


# -- rules --------------------------------------------------------------------------------------
def rule_holds(stack: Stack, expression: Any) -> bool:
    ((function, argument),) = expression.items()
    if function == "Fn::Contains":
        values, value = argument
        return str(stack.resolve(value)) in [str(stack.resolve(v)) for v in values]
    if function == "Fn::Equals":
        left, right = (str(stack.resolve(a)) for a in argument)
        return left == right
    if function == "Fn::Not":
        return not rule_holds(stack, argument[0])
    if function == "Fn::And":
        return all(rule_holds(stack, a) for a in argument)
    if function == "Fn::Or":
        return any(rule_holds(stack, a) for a in argument)
    raise NotImplementedError(function)


def rules_refusing(stack: Stack) -> list[str]:
    """The names of the template's rules the stack's parameters break (CloudFormation refuses it)."""
    broken = []
    for name, rule in stack.template.get("Rules", {}).items():
        if "RuleCondition" in rule and not rule_holds(stack, rule["RuleCondition"]):
            continue
        if not all(rule_holds(stack, a["Assert"]) for a in rule["Assertions"]):
            broken.append(name)
    return broken


__all__ = ["ACCOUNT", "REGION", "Principal", "Request", "Stack", "decide", "rules_refusing"]
