"""Invoke a built function as the Lambda python3.13 runtime would. Standard library only.

Run as `python3.13 -I -S lambda_bootstrap.py FUNCTION_DIR RUNTIME_DIR HANDLER < event.json`:
`-I -S` leave only the standard library on sys.path (no site-packages, no PYTHON* variables, not
this file's folder); then, as in Lambda, the function's own folder comes first and the runtime's
packages (its boto3) after it. Prints the handler's answer (or the runtime's error) as JSON on a
last line prefixed with RESULT_MARK; exits 1 when the runtime would report an error.
"""

import importlib
import json
import sys
import time
import traceback
import uuid

RESULT_MARK = "LAMBDA-RESULT "
SDK_MARK = "LAMBDA-SDK "  # which botocore the function ran with, and from where


class Context:
    """The Lambda context object's attributes and its one method."""

    def __init__(self, function_name: str, timeout_seconds: float) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = "1024"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "artefact-test"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def answer(result: object) -> None:
    print(RESULT_MARK + json.dumps(result), flush=True)


def main() -> int:
    function_dir, runtime_dir, handler, function_name, timeout = sys.argv[1:6]
    sys.path[:0] = [function_dir, runtime_dir]
    module_name, _, attribute = handler.rpartition(".")
    try:
        entry = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # noqa: BLE001 - what Lambda reports as Runtime.ImportModuleError
        traceback.print_exc()
        answer({"errorType": "Runtime.ImportModuleError", "errorMessage": f"{module_name}: {exc!r}"})
        return 1
    event = json.load(sys.stdin)
    try:
        result = entry(event, Context(function_name, float(timeout)))
    except Exception as exc:  # noqa: BLE001 - the runtime reports any error as the invocation's
        traceback.print_exc()
        answer({"errorType": type(exc).__name__, "errorMessage": str(exc)})
        return 1
    botocore = sys.modules.get("botocore")
    if botocore is not None:
        print(SDK_MARK + json.dumps({"version": botocore.__version__, "file": botocore.__file__}), flush=True)
    answer(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
