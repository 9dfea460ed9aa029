"""The archiver on this machine, without an AWS account: the embedded AWS, the template deployed
into it, the providers emulated, and what Lambda does around the functions, played in-process.

- `engines`: the embedded AWS (DynamoDB Local and moto_server, each in its own process), and the
  context and environment a function run in this process gets;
- `deploy`: template.yaml deployed into it, as `sam deploy` would;
- `moto_serialized`: moto's server, one request at a time;
- `emulator` (with `emulated_families`): the providers' task APIs and their CDN on 127.0.0.1;
- `queue`, `function_url`: the worker's SQS trigger and the callback's function URL, played locally;
- `run`: `runway-archiver run` against the embedded AWS, and `runway-archiver local`;
- `demo`: `make demo`.
"""
