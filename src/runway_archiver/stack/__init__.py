"""The operator's side of a deployed stack, as plain functions over boto3 (the CLI and the demo print them).

- `archive`: `StackResources` (the stack found by name) and `Archive`, the handle on its table,
  bucket and functions: list, show, retry, replay, run;
- `operations`: verify, export and forget;
- `status`: is the archive healthy?
"""
