"""The archive as an auditor, a data team and a data-protection request see it: verify, export, forget.

Plain functions over the operator's `Archive` (boto3). Every read of the table is by key, by the
status index, or (export without a status) a Scan page by page: nothing holds the whole table.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from runway_archiver_lambda.clock import iso_utc
from runway_archiver_lambda.events import BASE_ASSET_ROLES, build_event, encode
from runway_archiver_lambda.feed import families
from runway_archiver_lambda.tasks import ARCHIVED, FORGOTTEN, UNANNOUNCED, from_dynamo

from .archive import BATCH_GET_LIMIT, Archive, OperatorError, pages

__all__ = ["FORGOTTEN", "VERIFY_RESULTS", "archived_task_ids", "export_rows", "forget", "verify_task", "write_export"]

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import TextIO

READ_CHUNK = 1024 * 1024
DEFAULT_KEY_PREFIX = "runway"
DEFAULT_EVENT_SOURCE = "runway-archiver"


def _same_checksum(recorded: str, stored: str) -> bool:
    # S3 writes a multipart object's composite as "<base64>-<parts>"; moto leaves the suffix off.
    return recorded.split("-", maxsplit=1)[0] == stored.split("-", maxsplit=1)[0]


# -- verify ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One archived file checked against what the item recorded."""

    task_id: str
    role: str
    key: str | None
    result: str  # ok | missing | mismatch | skipped | archived-cold (see VERIFY_RESULTS)
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.result in ("missing", "mismatch")

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "role": self.role,
            "key": self.key,
            "result": self.result,
            "detail": self.detail,
        }


# Every result a check can have, in the order the CLI counts them. `archived-cold`: the object is in
# an archive storage class (GLACIER, DEEP_ARCHIVE, an archive tier) and not restored, so `--deep`
# could not download it; what HeadObject tells was checked. Only missing and mismatch fail.
VERIFY_RESULTS = ("ok", "missing", "mismatch", "skipped", "archived-cold")
# HeadObject's answers for an object that is not there: 404, or 403 to a caller without s3:ListBucket.
_NOT_THERE = frozenset({"404", "NoSuchKey", "NotFound"})
_FORBIDDEN = frozenset({"403", "Forbidden", "AccessDenied"})


def archived_task_ids(archive: Archive) -> Iterator[str]:
    """Every ARCHIVED task's id, page by page from the status index."""
    return (str(key["task_id"]) for key in archive.keys_with_status(ARCHIVED))


def verify_task(archive: Archive, task_id: str, *, deep: bool = False) -> list[Check]:
    """Each archived file of the task (and its manifest): there, the recorded size and checksum; `deep`
    also downloads it and hashes it again."""
    try:
        item = archive.get(task_id)
    except OperatorError as exc:
        return [Check(task_id, "-", None, "missing", str(exc))]
    if item.get("status") != ARCHIVED:
        return [Check(task_id, "-", None, "skipped", f"{item.get('status')}: nothing archived to verify")]
    s3 = archive.session.client("s3")
    checks = [
        _verify_object(s3, task_id, role, asset, deep)
        for role, asset in (item.get("assets") or {}).items()
        if asset  # a role the provider gave nothing for
    ]
    manifest = item.get("manifest")
    if manifest:
        checks.append(_verify_object(s3, task_id, "manifest", manifest, deep))
        if deep and checks[-1].result == "ok":  # downloaded: neither failed nor archived cold
            checks.append(_verify_manifest_contents(s3, task_id, manifest, item))
    else:
        checks.append(Check(task_id, "manifest", None, "skipped", "archived before manifests existed"))
    return checks


def _verify_object(s3: Any, task_id: str, role: str, recorded: dict[str, Any], deep: bool) -> Check:
    bucket, key = recorded["bucket"], recorded["key"]
    try:
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in _NOT_THERE:
            return Check(task_id, role, key, "missing", "no such object")
        if code in _FORBIDDEN:
            # S3 answers 403, not 404, for a missing key to a caller without s3:ListBucket.
            return Check(task_id, role, key, "missing", "S3 answered 403: no such object, or no permission to read it")
        raise
    problems = _head_problems(head, recorded)
    if not problems and deep:
        digest = hashlib.sha256()
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidObjectState":
                raise
            kept_in = exc.response.get("Error", {}).get("StorageClass") or head.get("StorageClass") or "an archive tier"
            return Check(
                task_id,
                role,
                key,
                "archived-cold",
                f"in {kept_in}, not restored: size and S3 checksum checked, not downloaded"
                " (restore it to hash it again)",
            )
        for chunk in iter(lambda: body.read(READ_CHUNK), b""):
            digest.update(chunk)
        if digest.hexdigest() != recorded.get("sha256"):
            problems.append("its SHA-256, computed again, differs from the recorded one")
    if problems:
        return Check(task_id, role, key, "mismatch", "; ".join(problems))
    expected = recorded.get("checksum_sha256")
    how = "SHA-256 computed again" if deep else ("size and S3 checksum" if expected else "size (no checksum recorded)")
    return Check(task_id, role, key, "ok", how)


def _head_problems(head: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """What S3 says of the object (without downloading it) that disagrees with the record."""
    problems = []
    if head["ContentLength"] != recorded.get("size"):
        problems.append(f"size {head['ContentLength']}, recorded {recorded.get('size')}")
    stored, expected = head.get("ChecksumSHA256"), recorded.get("checksum_sha256")
    if expected and not stored:
        problems.append("S3 stores no SHA-256 checksum for it (written by something else)")
    elif expected and stored and not _same_checksum(expected, stored):
        problems.append("S3's stored SHA-256 checksum differs from the recorded one")
    if recorded.get("version_id") and head.get("VersionId") != recorded["version_id"]:
        problems.append("a newer version replaced the archived one")
    named = head.get("Metadata", {}).get("sha256")
    if named and named != recorded.get("sha256"):
        problems.append("its sha256 metadata differs from the recorded SHA-256")
    return problems


def _verify_manifest_contents(s3: Any, task_id: str, manifest: dict[str, Any], item: dict[str, Any]) -> Check:
    document = json.loads(s3.get_object(Bucket=manifest["bucket"], Key=manifest["key"])["Body"].read())
    listed = {role: (a or {}).get("sha256") for role, a in document.get("assets", {}).items()}
    recorded = {role: (a or {}).get("sha256") for role, a in (item.get("assets") or {}).items()}
    if document.get("task_id") != task_id or listed != recorded:
        return Check(task_id, "manifest", manifest["key"], "mismatch", "its task id or assets differ from the item")
    return Check(task_id, "manifest", manifest["key"], "ok", "lists the recorded files")


# -- export ------------------------------------------------------------------------------------
EXPORT_ATTRIBUTES = (
    "task_id",
    "status",
    "provider_name",
    "dialect",
    "prompt",
    "prompt_en",
    "error",
    "first_seen_at",
    "completed_at",
    "announced_at",
    "forgotten_at",
    "assets",
    "manifest",
)
CSV_COLUMNS = (
    "task_id",
    "status",
    "provider_name",
    "dialect",
    "prompt",
    "prompt_en",
    "error",
    "completed_at",
    "manifest_key",
    *(f"{role}_{part}" for role in BASE_ASSET_ROLES for part in ("key", "size", "sha256")),
    "other_assets",
)


def export_rows(archive: Archive, status: str | None = None, page_size: int = 500) -> Iterator[dict[str, Any]]:
    """One row per task, a page at a time: the status index (then the items) for one status, else a Scan."""
    names = {f"#{a}": a for a in EXPORT_ATTRIBUTES}
    projection = ", ".join(names)
    if status is None:
        for items in pages(
            archive.table.scan, Limit=page_size, ProjectionExpression=projection, ExpressionAttributeNames=names
        ):
            yield from (_row(from_dynamo(item)) for item in items)
        return
    keys = archive.keys_with_status(status, page_size=BATCH_GET_LIMIT)  # one BatchGetItem's worth held at a time
    while batch := list(islice(keys, BATCH_GET_LIMIT)):
        items = archive.items(batch, EXPORT_ATTRIBUTES)
        yield from (_row(item) for item in sorted(items, key=lambda row: str(row["task_id"])))


def _row(item: dict[str, Any]) -> dict[str, Any]:
    assets = {
        role: {k: asset.get(k) for k in ("key", "size", "sha256", "content_type", "version_id", "checksum_sha256")}
        if asset
        else None
        for role, asset in (item.get("assets") or {}).items()
    }
    return {
        **{name: item.get(name) for name in EXPORT_ATTRIBUTES if name not in ("assets", "manifest")},
        "manifest_key": (item.get("manifest") or {}).get("key"),
        "assets": assets,
    }


def write_export(rows: Iterable[dict[str, Any]], out: TextIO, fmt: str) -> int:
    """Write rows as JSON Lines or CSV as they come; the number written."""
    count = 0
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, sort_keys=True, default=str) + "\n")
            count += 1
        return count
    # Rows end in CRLF (RFC 4180): Python's writer quotes a field holding a character of the line
    # terminator, so a CR or LF inside a prompt stays inside its quoted cell instead of ending the row.
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        flat = {name: row.get(name) for name in CSV_COLUMNS}
        assets = row.get("assets") or {}
        for role in BASE_ASSET_ROLES:
            for part in ("key", "size", "sha256"):
                flat[f"{role}_{part}"] = (assets.get(role) or {}).get(part)
        others = {role: a for role, a in assets.items() if role not in BASE_ASSET_ROLES and a}
        flat["other_assets"] = json.dumps(others, sort_keys=True) if others else ""
        writer.writerow({name: _inert_cell(value) for name, value in flat.items()})
        count += 1
    return count


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV Injection"); a
# prompt or an error message comes from a third party and may start with one on purpose.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert_cell(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: a leading `'` before what would start a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(rows: Iterable[dict[str, Any]]) -> str:
    """The CSV of a few rows as one string (for tests and the demo)."""
    buffer = io.StringIO()
    write_export(rows, buffer, "csv")
    return buffer.getvalue()


# -- forget ------------------------------------------------------------------------------------
# What becomes of the tombstone (Forgotten.tombstone).
KEPT, DELETED, DELETED_AFTER_ANNOUNCEMENT = "kept", "deleted", "deleted once its event is published"


@dataclass
class Forgotten:
    """What `forget` did. Its event is never published by the operator (the topic's policy lets only
    the archiver's roles publish): it waits in the item's outbox until a run publishes it."""

    task_id: str
    versions_deleted: int = 0
    uploads_aborted: int = 0
    event_id: str | None = None
    announced: bool = False  # its event was already published (by an earlier run)
    tombstone: str = KEPT
    prefixes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def forget(archive: Archive, task_id: str, *, allow_again: bool = False, now: datetime | None = None) -> Forgotten:
    """Erase a task: every version of every object under its prefix, its manifest, the item's content.

    Order: the tombstone first (no run can claim or archive the task from then on; it keeps only
    where the objects were), then S3, then the erasure is recorded done: where the objects were goes
    and the FORGOTTEN event goes into the item's outbox, for the next run to publish (with
    `allow_again`, that run deletes the tombstone after). Running it again finishes an erasure that
    was cut short. Refused while a run holds the task or its outcome waits to be announced.
    """
    # Imported here: the poller module names its Powertools logger after the service at import time,
    # and the demo sets the service's environment only after the CLI is loaded.
    from runway_archiver_lambda.lifecycle import VALID_TASK_ID

    if not VALID_TASK_ID.fullmatch(task_id):
        raise OperatorError(f"{task_id!r} is not a task id")
    moment = now or datetime.now(UTC)
    wall_now = int(moment.timestamp())
    item = archive.get(task_id)
    lease_until = int(item.get("lease_until") or 0)
    if lease_until > wall_now:
        until = iso_utc(lease_until)
        raise OperatorError(f"{task_id} is held by a run until {until}; try again after it ends")
    if item.get("status") != FORGOTTEN:
        if item.get("outbox") == UNANNOUNCED:
            raise OperatorError(f"{task_id}: its outcome is still being announced; try again after the next run")
        written = archive.store.tombstone(task_id, item, iso_utc(moment), wall_now)
        if written is None:
            raise OperatorError(f"{task_id} was claimed by a run meanwhile; try again after it ends")
        item = from_dynamo(dict(written))
    environment = _poller_environment(archive)
    prefix = environment.get("KEY_PREFIX", "").strip("/") or DEFAULT_KEY_PREFIX
    where = _places(archive, item, task_id, prefix)
    result = Forgotten(task_id, prefixes=[f"s3://{bucket}/{p}" for bucket, p in sorted(where)])
    for bucket, task_prefix in sorted(where):
        deleted, aborted = _erase_prefix(archive, bucket, task_prefix)
        result.versions_deleted += deleted
        result.uploads_aborted += aborted
    if not item.get("event"):
        event = _forgotten_event(environment, item, task_id, moment)
        archive.store.erasure_done(task_id, event, iso_utc(moment), allow_again=allow_again)
        item = archive.get(task_id)  # as it is now (a forget run alongside may have finished first)
    result.event_id = json.loads(str(item["event"]))["id"]
    result.announced = bool(item.get("announced_at")) and item.get("outbox") != UNANNOUNCED
    if item.get("allow_again"):
        result.tombstone = DELETED_AFTER_ANNOUNCEMENT
    elif allow_again:
        result.tombstone = _allow_again(archive, task_id, wall_now)
    return result


def _forgotten_event(environment: dict[str, str], tombstone: dict[str, Any], task_id: str, moment: datetime) -> str:
    """The runway.task.forgotten event: which files were erased (names and digests, no content), so
    downstream copies can be erased too; no prompt, no provider answer."""
    assets = tombstone.get("assets") or {}
    manifest = tombstone.get("manifest")
    return encode(
        build_event(
            source=environment.get("EVENT_SOURCE") or DEFAULT_EVENT_SOURCE,
            task_id=task_id,
            status=FORGOTTEN,
            time=iso_utc(moment),
            assets={
                role: {k: a.get(k) for k in ("bucket", "key", "size", "sha256")} if a else None
                for role, a in assets.items()
            },
            prompt=None,
            prompt_en=None,
            error=None,
            provider=None,
            provider_name=tombstone.get("provider_name"),
            manifest={k: manifest.get(k) for k in ("bucket", "key")} if manifest else None,
        )
    )


def _allow_again(archive: Archive, task_id: str, wall_now: int) -> str:
    """Delete an erased tombstone whose event is out, or have the run that publishes it do so."""
    for _ in range(2):  # its event may go out between the store's two writes: then a second try deletes
        done = archive.store.allow_again(task_id, wall_now)
        if done is not None:
            return DELETED if done == "deleted" else DELETED_AFTER_ANNOUNCEMENT
    raise OperatorError(f"{task_id}: a run is publishing its event; run forget --allow-again again after it ends")


def _poller_environment(archive: Archive) -> dict[str, str]:
    try:
        return archive.function_configuration(archive.resources.poller_function).environment
    except ClientError:
        return {}


def _places(archive: Archive, item: dict[str, Any], task_id: str, prefix: str) -> set[tuple[str, str]]:
    """(bucket, "{prefix}/{task_id}/") for the stack's prefix and every place the item names."""
    # A task id that names a model family's folder ({prefix}/kling/...) never takes that folder with it.
    places = {(archive.resources.bucket_name, f"{prefix}/{task_id}/")} if task_id not in families() else set()
    named = [a for a in (item.get("assets") or {}).values() if a] + ([item["manifest"]] if item.get("manifest") else [])
    for recorded in named:
        folder = str(recorded["key"]).rpartition("/")[0]
        if folder.endswith(f"/{task_id}") or folder == task_id:
            places.add((str(recorded["bucket"]), folder + "/"))
    return places


def _erase_prefix(archive: Archive, bucket: str, prefix: str) -> tuple[int, int]:
    """Delete every version and delete marker under `prefix`; abort uploads left open there."""
    s3 = archive.session.client("s3")
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        doomed: list[Any] = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            if v["Key"].startswith(prefix)
        ]
        for start in range(0, len(doomed), 1000):
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise OperatorError(
                    f"S3 kept s3://{bucket}/{first.get('Key')}: {first.get('Code')}; run forget again to finish"
                )
            deleted += len(doomed[start : start + 1000])
    aborted = 0
    for uploads in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in uploads.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
    return deleted, aborted
