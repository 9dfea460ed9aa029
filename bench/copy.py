"""Targets 2 and 3, the streaming copy: memory and speed of archiving one large video.

Each way of copying runs in a process of its own (so its peak RSS is its own; moto_server and the
CDN emulator live elsewhere), against the same S3 endpoint and the same bytes:

- `stream`: the archiver's copy, `MediaArchiver.copy` as the deployed poller wires it (CDN
  stream -> hashing reader -> multipart upload), nothing written to disk (an audit hook counts
  every file opened for writing);
- `upload_file`: boto3's `upload_file` of the same bytes from local disk (the limit: a download
  fully overlapped with the upload costs no more than the upload);
- `naive`: download to a file on disk, then `upload_file` it.

The CDN serves 200 MiB/s by default (`--cdn-mib-per-second`): about what one Lambda function
downloads from a CDN. Unthrottled, the emulator on loopback serves several times faster than
moto's S3 takes bytes in, which would make any download look free and the naive way look good.

    python -m bench.copy [--mib 1024] [--cdn-mib-per-second 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runway_archiver.local.emulator import media_bytes

from .harness import Figure, child_environment, local_archive

TASK = "bench-copy"
MiB = 1024 * 1024


# -- the child: one copy, measured from inside --------------------------------------------------
def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(mode: str, url: str, source: str | None) -> dict[str, Any]:
    import boto3
    import urllib3

    from runway_archiver_lambda.wiring import build_poller

    written: list[str] = []

    def audit(event: str, args: tuple[Any, ...]) -> None:
        writing = event == "open" and isinstance(args[0], str) and isinstance(args[1], str)
        if writing and any(flag in args[1] for flag in "wax+") and not args[0].startswith(("/dev/", "/proc/")):
            written.append(args[0])

    # The time of the copy inside S3 that re-stamps a multipart upload with its SHA-256 (from
    # the CopyObject's request to its answer): moto copies locally; S3's time differs.
    restamp: dict[str, float] = {}

    def mark(name: str) -> Any:
        def hook(**_: Any) -> None:  # a before-call hook that returned a value would answer for S3
            restamp.setdefault(name, time.perf_counter())

        return hook

    session = boto3.session.Session()
    session.events.register("before-call.s3.CopyObject", mark("started"))
    session.events.register("after-call.s3.CopyObject", mark("ended"))
    poller = build_poller(os.environ, session)
    bucket = os.environ["BUCKET_NAME"]
    s3 = boto3.client("s3")
    s3.head_bucket(Bucket=bucket)  # connections and credentials warm, as in a warm container
    sys.addaudithook(audit)
    baseline = _rss_kib("VmRSS")
    started = time.perf_counter()
    if mode == "stream":
        poller.media.copy(TASK, "video", url)
    elif mode == "upload_file":
        assert source is not None
        s3.upload_file(source, bucket, f"runway/{TASK}/upload_file.mp4")
    elif mode == "naive":
        with tempfile.NamedTemporaryFile(suffix=".mp4") as spool:
            response = urllib3.PoolManager().request("GET", url, preload_content=False)
            for chunk in response.stream(MiB):
                spool.write(chunk)
            response.release_conn()
            spool.flush()
            s3.upload_file(spool.name, bucket, f"runway/{TASK}/naive.mp4")
    seconds = time.perf_counter() - started
    return {
        "mode": mode,
        "seconds": seconds,
        "rss_growth_mib": (_rss_kib("VmHWM") - baseline) / 1024,
        "files_written": len(written),
        "restamp_seconds": restamp["ended"] - restamp["started"] if "ended" in restamp else 0.0,
    }


# -- the parent: the stage, three children, the figures -----------------------------------------
def measure(mib: int = 1024, cdn_mib_per_second: float = 200.0) -> tuple[list[Figure], dict[str, dict[str, Any]]]:
    size = mib * MiB
    with (
        local_archive(latency=0.0, media_bytes_per_second=cdn_mib_per_second * MiB or None) as archive,
        tempfile.TemporaryDirectory() as scratch,
    ):
        archive.feed.add_task(TASK, "3", video_size=size)
        url = archive.feed.media_url(TASK, "video.mp4")
        source = Path(scratch) / "video.mp4"
        with source.open("wb") as out:
            for chunk in media_bytes(f"/media/{TASK}/video.mp4", size):
                out.write(chunk)
        env = child_environment(archive.stack.function_environment)
        results = {}
        for mode in ("upload_file", "stream", "naive"):
            done = subprocess.run(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "bench.copy", "--child", mode, "--url", url, "--source", str(source)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"the {mode} copy failed: {done.stderr[-2000:]}")
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            _forget_versions(archive.session, archive.stack.bucket_name)  # moto keeps every version in memory
    stream, upload, naive = results["stream"], results["upload_file"], results["naive"]
    # Target 3 is the streaming transfer's: the bytes from the CDN into S3. The re-stamping copy that
    # follows a multipart upload moves no byte through the function (S3 copies inside itself; moto in
    # its own process), so it gets a line of its own, against the same limit, rather than hiding in
    # or out of the transfer's figure.
    transfer = stream["seconds"] - stream["restamp_seconds"]
    took = f"{transfer:.2f} s"
    with_restamp = f"{stream['seconds']:.2f} s (re-stamp {stream['restamp_seconds']:.2f} s)"
    figures = [
        Figure(
            "2. streaming copy, memory",
            f"{mib} MiB: RSS +{stream['rss_growth_mib']:.0f} MiB, {stream['files_written']} files written",
            "<= +128 MiB, no file",
            stream["rss_growth_mib"] / 128 if stream["files_written"] == 0 else float("inf"),
            1.0,
        ),
        Figure(
            "3. streaming copy vs upload_file",
            f"{took} vs {upload['seconds']:.2f} s from disk",
            "<= 1.25 x upload_file",
            transfer / upload["seconds"],
            1.25,
        ),
        Figure(
            "3. streaming copy vs naive",
            f"{took} vs {naive['seconds']:.2f} s download+upload",
            "<= 0.8 x naive",
            transfer / naive["seconds"],
            0.8,
        ),
        Figure(
            "3. copy + re-stamp vs upload_file",
            f"{with_restamp} vs {upload['seconds']:.2f} s from disk",
            "<= 1.25 x upload_file",
            stream["seconds"] / upload["seconds"],
            1.25,
        ),
    ]
    return figures, results


def _forget_versions(session: Any, bucket: str) -> None:
    s3 = session.client("s3")
    for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="the video's size in MiB")
    parser.add_argument(
        "--cdn-mib-per-second", type=float, default=200.0, help="the CDN emulator's bandwidth (0: unlimited)"
    )
    parser.add_argument("--child", choices=("stream", "upload_file", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.url, args.source)))
        return 0
    figures, results = measure(args.mib, args.cdn_mib_per_second)
    for figure in figures:
        print(figure.line())
    for result in results.values():
        print(f"   {result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
