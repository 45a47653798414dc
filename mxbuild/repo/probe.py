"""Does an S3 endpoint honour conditional writes? The publish protocol's compare-and-swap
rests on them: a server that accepts a PUT with a stale `If-Match` (or `If-None-Match: *`
on an existing key) silently lets one publisher overwrite another's commit, and packages
are lost. Writes and deletes a few objects under `<prefix>/.mxbuild-probe/`."""
from __future__ import annotations

import secrets

from botocore.exceptions import ClientError

PRECONDITION = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def conditional_writes(storage) -> list[str]:
    """What the server got wrong ([] when it refuses every stale conditional write)."""
    client, bucket = storage.client, storage.target.bucket
    key = storage._key(f".mxbuild-probe/{secrets.token_hex(8)}")
    where = f"{storage.describe()} ({storage.target.endpoint_url or 'AWS'})"
    problems = []

    def put(body: bytes, **cond):
        return client.put_object(Bucket=bucket, Key=key, Body=body, **cond)

    def refused(body: bytes, what: str, **cond) -> None:
        try:
            put(body, **cond)
        except ClientError as exc:
            if _code(exc) in PRECONDITION:
                return
            problems.append(f"{where}: {what} answered {_code(exc)} instead of 412")
            return
        problems.append(f"{where}: {what} was ACCEPTED (expected 412 Precondition Failed): "
                        "the server ignores the precondition, so concurrent publishers "
                        "would lose packages")
    try:
        first = put(b"one", IfNoneMatch="*")["ETag"]            # create-only on a new key
        second = put(b"two", IfMatch=first)["ETag"]             # a current If-Match
        refused(b"three", "a PUT with a stale If-Match", IfMatch=first)
        refused(b"four", "a PUT with If-None-Match: * on an existing key", IfNoneMatch="*")
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if body != b"two":
            problems.append(f"{where}: the object holds {body!r} after the refused writes, "
                            "not b'two'")
        if second == first:
            problems.append(f"{where}: the ETag did not change when the content did")
    finally:
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except ClientError:
            pass
    return problems
