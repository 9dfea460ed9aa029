"""Copy a third-party media URL into S3 as a stream, behind the address guard (`address_guard`).

Every hop of a download is checked by the guard first, and every connection goes through it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import mimetypes
import posixpath
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any, ClassVar, Final, Protocol, cast
from urllib.parse import urljoin, urlsplit

import urllib3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

from .address_guard import AddressGuard, guarded_pool_manager, sockets_reported_to
from .errors import MediaError, Persistence

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
READ_CHUNK = 256 * 1024  # what one read of the body asks for
MAX_REDIRECTS = 3
MANIFEST_NAME = "task.json"  # beside the media: {prefix}/{task_id}/task.json
_EXTENSIONS = {
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
}
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})


class HopHeaders(Protocol):
    """Headers for one hop of a download (`feed.MediaAuth`: the key, to the API's own host only)."""

    def headers_for(self, url: str) -> dict[str, str]: ...


class MediaTooLarge(MediaError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason, Persistence.PERMANENT)


# A CDN answering these has lost the file (or the signed link expired): wait a grace period, then fail.
_GONE_STATUSES = frozenset({403, 404, 410})


# S3 checks a SHA-256 of every request body it is sent (each part of a multipart upload) and refuses
# one that does not match (BadDigest). botocore computes it with hashlib on every version the Lambda
# runtime ships, without the CRT; CRC32C and CRC64NVME would need the CRT, and a whole-object
# (FULL_OBJECT) checksum of a multipart upload needs botocore 1.36 and a value known before the
# upload starts, which a stream does not have (docs/contract.md, "Integrity").
CHECKSUM_ALGORITHM: Final = "SHA256"
# A multipart upload is re-stamped by a copy of itself: up to this size one CopyObject, after which
# S3 stores the object's own SHA-256 (not a composite); above it S3 allows only a copy in parts.
SINGLE_COPY_LIMIT: Final = 5 * 1024**3


@dataclass(frozen=True)
class StoredAsset:
    """One media file as it now lives in the archive bucket."""

    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str
    version_id: str | None = None
    # What S3 stored as the object's checksum: the SHA-256 (base64) of the whole object, or for one
    # over SINGLE_COPY_LIMIT the composite of its parts ("<base64 of the SHA-256 of the parts' digests>-<parts>").
    checksum_sha256: str | None = None

    def as_dict(self) -> dict[str, str | int | None]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "version_id": self.version_id,
            "checksum_sha256": self.checksum_sha256,
        }


def object_metadata(task_id: str, role: str, sha256: str | None = None) -> dict[str, str]:
    """What every archived object says of itself (S3 user metadata): task, role and, once known, SHA-256."""
    return {"task-id": task_id, "role": role, **({"sha256": sha256} if sha256 else {})}


def base64_sha256(hexdigest: str) -> str:
    """A SHA-256 as S3 states a checksum (base64 of the digest)."""
    return base64.b64encode(bytes.fromhex(hexdigest)).decode()


def composite_sha256(part_checksums: list[str]) -> str:
    """A multipart object's checksum as S3 composes it: the SHA-256 of the parts' SHA-256s, and their number."""
    whole = hashlib.sha256(b"".join(base64.b64decode(part) for part in part_checksums)).digest()
    return f"{base64.b64encode(whole).decode()}-{len(part_checksums)}"


@dataclass(frozen=True)
class Receipt:
    """What S3 answered to the request that created an object."""

    version_id: str | None
    checksum_sha256: str | None
    multipart: bool = False  # completed by CompleteMultipartUpload: its metadata was fixed before the body was read


class UploadReceipts:
    """Catches S3's answer to the request that completes an upload or a copy (PutObject, CopyObject or
    CompleteMultipartUpload).

    upload_fileobj and copy return nothing; the version id and the stored checksum are in that answer.
    The hooks are botocore's public event system; the request context carries the key from one to the other.
    """

    OPERATIONS = ("PutObject", "UploadPart", "CompleteMultipartUpload", "CopyObject", "UploadPartCopy")

    def __init__(self, s3: S3Client) -> None:
        self._lock = threading.Lock()
        self._receipts: dict[tuple[str, str], Receipt] = {}
        self._parts: dict[tuple[str, str], dict[int, str]] = {}
        self._metadata: dict[tuple[str, str], Callable[[], dict[str, str]]] = {}
        for operation in self.OPERATIONS:
            s3.meta.events.register(f"before-parameter-build.s3.{operation}", self._note_key)
            s3.meta.events.register(f"after-call.s3.{operation}", self._keep)

    def expect(self, bucket: str, key: str, late_metadata: Callable[[], dict[str, str]]) -> None:
        """`late_metadata` is added to a single-request upload: by then the whole body has been read."""
        with self._lock:
            self._metadata[(bucket, key)] = late_metadata

    def take(self, bucket: str, key: str) -> Receipt | None:
        with self._lock:
            self._metadata.pop((bucket, key), None)
            parts = self._parts.pop((bucket, key), {})
            receipt = self._receipts.pop((bucket, key), None)
        if receipt and not receipt.checksum_sha256 and parts:
            # S3 answers CompleteMultipartUpload with the composite; an emulator may not: the same value
            # from the parts' checksums S3 echoed (no second pass over the bytes).
            composite = composite_sha256([parts[n] for n in sorted(parts)])
            receipt = Receipt(receipt.version_id, composite, receipt.multipart)
        return receipt

    def _note_key(self, params: dict[str, Any], context: dict[str, Any], model: Any, **_: Any) -> None:
        where = (str(params.get("Bucket")), str(params.get("Key")))
        context["archiver_object"] = where
        context["archiver_part"] = params.get("PartNumber")
        context["archiver_operation"] = model.name
        with self._lock:
            late = self._metadata.get(where)
        if late is not None and model.name == "PutObject":
            params["Metadata"] = {**params.get("Metadata", {}), **late()}

    def _keep(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        where = context.get("archiver_object")
        if where is None or http_response.status_code >= 300:
            return
        with self._lock:
            if where not in self._metadata:
                return
            # UploadPartCopy and CopyObject answer with their checksum inside a result element.
            result = parsed.get("CopyPartResult") or parsed.get("CopyObjectResult") or parsed
            if context.get("archiver_part") is not None:
                if result.get("ChecksumSHA256"):
                    self._parts.setdefault(where, {})[int(context["archiver_part"])] = result["ChecksumSHA256"]
                return
            multipart = context.get("archiver_operation") == "CompleteMultipartUpload"
            self._receipts[where] = Receipt(parsed.get("VersionId"), result.get("ChecksumSHA256"), multipart)


class CopyDeadline:
    """Bounds one copy's download (connect, headers, body) by its deadline, however slowly a host answers.

    urllib3's read timeout restarts with every byte received, and a read of n bytes waits for all n:
    a host sending a byte every few seconds, in its headers or its body, never trips a timeout.
    A timer shuts down every socket the copy sends a request on (`sockets_reported_to`) when the
    deadline passes; the blocked read returns at once and the copy fails as not finished in time.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._timer: threading.Timer | None = None

    @property
    def expired(self) -> bool:
        with self._lock:
            return self._expired or time.monotonic() > self.deadline

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self._expired
        if expired:
            _shut(sock)

    def __enter__(self) -> CopyDeadline:
        if math.isfinite(self.deadline):
            self._timer = threading.Timer(max(0.0, self.remaining()), self._expire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    """Shut a socket down under whatever thread is blocked on it (for TLS too: the raw socket's shutdown,
    not SSLSocket's, which would pull the TLS state from under the reader)."""
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _HashingReader:
    """A file-like view of an HTTP body that hashes, counts and bounds what passes through."""

    def __init__(
        self, response: urllib3.BaseHTTPResponse, expected_size: int | None, max_size: int, deadline: CopyDeadline
    ) -> None:
        self._response = response
        self._deadline = deadline
        self._expected_size = expected_size
        self._max_size = max_size
        self._sha256 = hashlib.sha256()
        self.size = 0
        self.finished = False

    def read(self, size: int = -1) -> bytes:
        chunks: list[bytes] = []
        wanted = size if size >= 0 else None
        got = 0
        while wanted is None or got < wanted:
            if self._deadline.expired:
                raise self._late(got)
            try:
                data = self._response.read(min(READ_CHUNK, wanted - got) if wanted is not None else READ_CHUNK)
            except (Urllib3Error, OSError) as exc:
                if self._deadline.expired:  # the deadline's timer shut the socket down
                    raise self._late(got) from exc
                raise MediaError(f"download broken off after {self.size + got} bytes: {type(exc).__name__}") from exc
            if not data:
                if self._deadline.expired:  # a body without a length ends at EOF: this one was cut
                    raise self._late(got)
                break
            chunks.append(data)
            got += len(data)
        body = b"".join(chunks)
        self.size += len(body)
        self._sha256.update(body)
        if self.size > self._max_size:
            raise MediaTooLarge(f"body exceeds the limit of {self._max_size} bytes")
        if wanted is None or got < wanted:
            self._finish()
        return body

    def _late(self, got: int) -> MediaError:
        return MediaError(f"copy not finished in time after {self.size + got} bytes")

    def _finish(self) -> None:
        if self._expected_size is not None and self.size != self._expected_size:
            raise MediaError(f"body has {self.size} bytes, Content-Length said {self._expected_size}")
        self.finished = True

    @property
    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


def streaming_transfer_config(
    part_size: int = 8 * MiB, concurrency: int = 4, buffered_parts: int = 4
) -> TransferConfig:
    """Multipart settings for a non-seekable stream: memory is about part size x buffered parts."""
    config = TransferConfig(
        multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=concurrency, use_threads=True
    )
    # boto3's constructor does not take this s3transfer setting; its default (10) doubles the memory.
    config.max_in_memory_upload_chunks = buffered_parts
    return config


def restamp_transfer_config(part_size: int = 8 * MiB, concurrency: int = 4) -> TransferConfig:
    """The re-stamp of a file over SINGLE_COPY_LIMIT (smaller ones are one CopyObject): a copy inside
    S3 in parts of the upload's size, so S3's composite is that of the upload's part size."""
    return TransferConfig(
        multipart_threshold=SINGLE_COPY_LIMIT,
        multipart_chunksize=part_size,
        max_concurrency=concurrency,
        use_threads=True,
    )


class MediaArchiver:
    """Streams media URLs into the archive bucket: never a whole file in memory or on disk."""

    ROLES: ClassVar[dict[str, str]] = {"video": "video", "poster": "image", "last_frame": "image"}

    @classmethod
    def kind_of(cls, role: str) -> str:
        """The media type a role must have: `video_2`, `video_3`... (further outputs) are videos."""
        return cls.ROLES.get(role) or ("video" if role.startswith("video_") else "image")

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        key_prefix: str,
        guard: AddressGuard,
        *,
        max_bytes: int,
        http: urllib3.PoolManager | None = None,
        timeout: urllib3.Timeout | None = None,
        transfer_config: TransferConfig | None = None,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = key_prefix.strip("/")
        self._guard = guard
        self._max_bytes = max_bytes
        self._http = http or guarded_pool_manager(guard, maxsize=8, block=True)
        self._timeout = timeout or urllib3.Timeout(connect=3.05, read=30.0)
        self._transfer = transfer_config or streaming_transfer_config()
        self._restamp_config = restamp_transfer_config(self._transfer.multipart_chunksize)
        self._receipts = UploadReceipts(s3)
        self._retry = urllib3.Retry(
            total=2,
            connect=2,
            read=2,
            status=2,
            redirect=0,
            other=0,
            raise_on_redirect=False,
            raise_on_status=False,
            status_forcelist=frozenset({500, 502, 503, 504}),
            backoff_factor=0.5,
            backoff_jitter=0.5,
            backoff_max=5.0,
            retry_after_max=10,
        )

    def key_for(self, task_id: str, role: str, extension: str, folder: str | None = None) -> str:
        return f"{self._task_folder(task_id, folder)}/{role}{extension}"

    def _task_folder(self, task_id: str, folder: str | None) -> str:
        """`{prefix}/{task_id}` (Runway's tasks, as always), or `{prefix}/{folder}/{task_id}` (another family's)."""
        return f"{self._prefix}/{folder}/{task_id}" if folder else f"{self._prefix}/{task_id}"

    def copy(
        self,
        task_id: str,
        role: str,
        url: str,
        *,
        deadline: float | None = None,
        auth: HopHeaders | None = None,
        folder: str | None = None,
    ) -> StoredAsset:
        """Copy one URL to `{prefix}/[{folder}/]{task_id}/{role}{ext}`; the same key on every retry.

        `deadline` (time.monotonic()) bounds the whole copy, connection, headers and body included;
        past it the copy is abandoned and the multipart upload aborted, so nothing partial is ever
        visible in the bucket. `auth` gives the headers of each hop (the API key for the API's own
        host, nothing for any other).
        """
        with CopyDeadline(float("inf") if deadline is None else deadline) as bound:
            with sockets_reported_to(bound.watch):
                response = self._open(url, bound, auth)
            try:
                asset = self._upload(task_id, role, url, response, bound, folder=folder)
            except BaseException:
                response.close()  # a half-read body must not go back to the pool
                raise
        response.release_conn()
        return asset

    def _upload(
        self,
        task_id: str,
        role: str,
        url: str,
        response: urllib3.BaseHTTPResponse,
        deadline: CopyDeadline,
        *,
        folder: str | None = None,
    ) -> StoredAsset:
        content_type = _accepted_content_type(role, self.kind_of(role), response, url)
        expected = _content_length(response)
        if expected is not None and expected > self._max_bytes:
            raise MediaTooLarge(f"Content-Length {expected} exceeds the limit of {self._max_bytes} bytes")
        key = self.key_for(task_id, role, _extension(content_type, url), folder)
        reader = _HashingReader(response, expected, self._max_bytes, deadline)
        # A file copied out of the bucket still says what it is. The SHA-256 is known before the object
        # is created only for a single-request upload; a multipart one is re-stamped with it (_restamp).
        self._receipts.expect(
            self._bucket, key, lambda: object_metadata(task_id, role, reader.hexdigest) if reader.finished else {}
        )
        try:
            self._s3.upload_fileobj(
                cast("IO[bytes]", reader),  # file-like enough: s3transfer only calls read()
                self._bucket,
                key,
                ExtraArgs={
                    "ContentType": content_type,
                    "ChecksumAlgorithm": CHECKSUM_ALGORITHM,
                    "Metadata": object_metadata(task_id, role),
                },
                Config=self._transfer,
            )
        except (ClientError, BotoCoreError) as exc:
            self._receipts.take(self._bucket, key)
            raise MediaError(f"upload to s3://{self._bucket}/{key} failed: {_s3_error(exc)}") from exc
        receipt = self._receipts.take(self._bucket, key) or Receipt(None, None)
        if not reader.finished:
            raise MediaError("upload ended before the download did")
        asset = StoredAsset(
            self._bucket,
            key,
            reader.size,
            reader.hexdigest,
            content_type,
            version_id=receipt.version_id,
            checksum_sha256=receipt.checksum_sha256,
        )
        return self._restamp(asset, role, task_id) if receipt.multipart else asset

    def _restamp(self, asset: StoredAsset, role: str, task_id: str) -> StoredAsset:
        """Give a multipart upload the metadata a single-request one has, `sha256` included.

        Its metadata was fixed at CreateMultipartUpload, before the body had been read; a copy of
        the exact version just uploaded onto its own key, inside S3, replaces it. The first version
        becomes noncurrent (the bucket's `expire-replaced-versions` rule removes it). If the copy
        fails the task stays PENDING and the next run archives it again, as after a failed upload.
        """
        source = {"Bucket": asset.bucket, "Key": asset.key}
        if asset.version_id:
            source["VersionId"] = asset.version_id  # never a version another writer made meanwhile
        stamp: dict[str, Any] = {
            "MetadataDirective": "REPLACE",
            "ContentType": asset.content_type,
            "Metadata": object_metadata(task_id, role, asset.sha256),
            "ChecksumAlgorithm": CHECKSUM_ALGORITHM,
        }
        self._receipts.expect(asset.bucket, asset.key, dict)
        try:
            if asset.size < SINGLE_COPY_LIMIT:
                # One CopyObject, as s3transfer would send below its threshold, without the HeadObject
                # it sends first to learn a size we already know.
                self._s3.copy_object(CopySource=source, Bucket=asset.bucket, Key=asset.key, **stamp)  # type: ignore[arg-type]
            else:
                self._s3.copy(source, asset.bucket, asset.key, ExtraArgs=stamp, Config=self._restamp_config)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError) as exc:
            self._receipts.take(asset.bucket, asset.key)
            raise MediaError(f"re-stamping s3://{asset.bucket}/{asset.key} failed: {_s3_error(exc)}") from exc
        receipt = self._receipts.take(asset.bucket, asset.key) or Receipt(None, None)
        checksum = receipt.checksum_sha256
        if not checksum and not receipt.multipart:
            # One CopyObject with ChecksumAlgorithm=SHA256: S3 stores the object's SHA-256, which we
            # computed; an emulator may leave it out of its answer.
            checksum = base64_sha256(asset.sha256)
        return replace(asset, version_id=receipt.version_id, checksum_sha256=checksum)

    def put_manifest(self, task_id: str, manifest: dict[str, Any], folder: str | None = None) -> StoredAsset:
        """Write `{prefix}/[{folder}/]{task_id}/task.json` (after the media, before the item names it)."""
        key = f"{self._task_folder(task_id, folder)}/{MANIFEST_NAME}"
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        digest = hashlib.sha256(body)
        try:
            answer = self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
                Metadata=object_metadata(task_id, "manifest", digest.hexdigest()),
            )
        except (ClientError, BotoCoreError) as exc:
            raise MediaError(f"writing s3://{self._bucket}/{key} failed: {_s3_error(exc)}") from exc
        return StoredAsset(
            self._bucket,
            key,
            len(body),
            digest.hexdigest(),
            "application/json",
            version_id=answer.get("VersionId"),
            checksum_sha256=answer.get("ChecksumSHA256") or base64_sha256(digest.hexdigest()),
        )

    def _open(self, url: str, deadline: CopyDeadline, auth: HopHeaders | None = None) -> urllib3.BaseHTTPResponse:
        """GET `url`, following at most MAX_REDIRECTS redirects, each hop checked again (and given
        only its own headers: a redirect off the API's host goes without the key)."""
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            self._guard.check_url(current)
            if deadline.expired:
                raise MediaError(f"copy not finished in time: no answer from {_safe(current)}")
            try:
                response = self._http.request(
                    "GET",
                    current,
                    headers=auth.headers_for(current) if auth else None,
                    preload_content=False,
                    redirect=False,
                    retries=self._retry,
                    timeout=_within(self._timeout, deadline.remaining()),
                )
            except (Urllib3Error, OSError) as exc:
                if deadline.expired:  # headers dripped past the deadline: its timer shut the socket
                    raise MediaError(f"copy not finished in time: no answer from {_safe(current)}") from exc
                raise MediaError(f"download of {_safe(current)} failed: {type(exc).__name__}") from exc
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                current = urljoin(current, response.headers["Location"])
                response.drain_conn()
                response.release_conn()
                continue
            if response.status != 200:
                response.drain_conn()
                response.release_conn()
                gone = response.status in _GONE_STATUSES
                raise MediaError(
                    f"download of {_safe(current)} answered HTTP {response.status}",
                    Persistence.PERSISTENT if gone else Persistence.TRANSIENT,
                )
            return response
        raise MediaError(f"more than {MAX_REDIRECTS} redirects from {_safe(url)}", Persistence.PERSISTENT)


def _within(timeout: urllib3.Timeout, remaining: float) -> urllib3.Timeout:
    """`timeout`, no longer than what is left of the copy's time (a connect never outlives it)."""
    if not math.isfinite(remaining):
        return timeout
    left = max(0.001, remaining)
    connect, read = timeout.connect_timeout, timeout.read_timeout
    return urllib3.Timeout(
        connect=min(connect, left) if isinstance(connect, int | float) else left,
        read=min(read, left) if isinstance(read, int | float) else left,
    )


def _s3_error(exc: Exception) -> str:
    """The error's class and, for S3's refusals, its code (BadDigest: a part S3 received corrupted)."""
    code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__


def _accepted_content_type(role: str, kind: str, response: urllib3.BaseHTTPResponse, url: str) -> str:
    declared = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if not declared or declared in _GENERIC_TYPES:
        guessed, _ = mimetypes.guess_type(urlsplit(url).path)
        return guessed if guessed and guessed.startswith(kind + "/") else declared or "application/octet-stream"
    if not declared.startswith(kind + "/"):
        # Typically an error page served with 200: the file is not there (yet).
        raise MediaError(f"{role} answered Content-Type {declared!r}, expected {kind}/*", Persistence.PERSISTENT)
    return declared


def _content_length(response: urllib3.BaseHTTPResponse) -> int | None:
    raw = response.headers.get("Content-Length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise MediaError(f"invalid Content-Length {raw[:40]!r}") from exc


def _extension(content_type: str, url: str) -> str:
    if content_type in _EXTENSIONS:
        return _EXTENSIONS[content_type]
    suffix = posixpath.splitext(urlsplit(url).path)[1].lower()
    return suffix if suffix in _EXTENSIONS.values() else ""


def _safe(url: str) -> str:
    """A URL for logs: scheme, host and path; a query string may carry a signature."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"[:200]
