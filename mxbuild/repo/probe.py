"""Does an S3 endpoint honour conditional writes? The publish protocol's compare-and-swap
rests on them: a server that accepts a PUT with a stale `If-Match` (or `If-None-Match: *`
on an existing key) silently lets one publisher overwrite another's commit, and packages
are lost; a server that refuses a *current* `If-Match` lets no commit through at all.

`conditional_writes(storage)` asks the server (a few objects under
`<prefix>/.mxbuild-probe/`, deleted afterwards) and returns a `Verdict`: every deviation
it saw, named, and the form of `If-Match` the server honours. Ceph RGW up to reef 18.2.7
refuses its own current ETag in the quoted form S3 returns (`"f97c…"`) and accepts it
unquoted (it compares the raw header with its unquoted ETag; ceph/ceph PR #63348): a
deviation mxbuild works around by sending the ETag unquoted to that server.

`ensure_safe(storage)` runs before the first write of a process to an S3 repository: it
reads the verdict cached in the repository (`VERDICT_KEY`; the same GET gives the server's
identity headers), probes again when there is none for this endpoint, when the server's
identity changed or when it is older than `MAX_AGE`, caches a safe verdict, and refuses
an unsafe server before anything is written.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from dataclasses import asdict, dataclass

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import RepoError
from ..log import log

PRECONDITION = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
DENIED = ("AccessDenied", "403", "Forbidden", "AllAccessDisabled")
QUOTED, UNQUOTED = "quoted", "unquoted"
# The cached verdicts of the servers this repository was published through. In the
# repository (not next to the signing key) because every publisher of the repository
# shares it: CI agents start empty, so a per-machine cache would mean a probe per publish.
VERDICT_KEY = ".mxbuild/s3-conditional-writes.json"
MAX_AGE = dt.timedelta(days=7)   # probe again at least this often (a server upgrade may
                                 # not show in its identity headers)
FORMAT = 1


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def unquoted(etag: str) -> str:
    return etag[2:] if etag.startswith("W/") else etag.strip('"')


def if_match_value(etag: str, form: str) -> str:
    """An ETag as S3 returned it (quoted) in the given If-Match form."""
    bare = unquoted(etag)
    return bare if form == UNQUOTED else f'"{bare}"'


def request_id_shape(value: str) -> str:
    """What stays the same across a server's request ids: each `-`/`_`/`.`-separated part
    keeps its letters prefix and its length class, hex and digit runs become `h`
    (RGW: `tx0000091eeaaf7507c7346-006b14e53e-1010-default` → `txh-h-h-default`)."""
    def part(text: str) -> str:
        if re.fullmatch(r"[0-9a-fA-F]+", text) and (len(text) >= 4 or text.isdigit()):
            return "h"
        m = re.fullmatch(r"([a-zA-Z]{1,3})([0-9a-fA-F]{8,})", text)
        return f"{m.group(1)}h" if m else (text if text.isalpha() else f"<{len(text)}>")
    return "-".join(part(p) for p in re.split(r"[-_.]", value))


def identity(headers: dict) -> str:
    """The server's identity from a response's headers (botocore lower-cases the names):
    its `Server` header and the shape of its request id."""
    server = headers.get("server") or "no Server header"
    rid = headers.get("x-amz-request-id")
    shape = request_id_shape(rid) if rid else "none"
    return f"{server}; request id {shape}" + ("; x-amz-id-2" if "x-amz-id-2" in headers else "")


@dataclass(frozen=True)
class Verdict:
    endpoint: str                 # the endpoint URL, or "AWS <region>"
    server: str                   # identity(): Server header, request-id shape
    if_match: str | None          # the form of a current ETag the server accepts
    problems: tuple[str, ...] = ()  # every deviation from S3's conditional writes
    handled: tuple[str, ...] = ()   # those of them mxbuild works around (a subset)
    probed: str = ""              # UTC, ISO 8601
    accepted_forms: tuple[str, ...] = ()  # the If-Match forms of a current ETag it took

    @property
    def safe(self) -> bool:
        return self.if_match is not None and set(self.problems) <= set(self.handled)

    @property
    def refusals(self) -> list[str]:
        """The deviations that make publishing through this server unsafe."""
        return [p for p in self.problems if p not in self.handled]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "Verdict":
        return cls(doc["endpoint"], doc["server"], doc.get("if_match"),
                   tuple(doc.get("problems", ())), tuple(doc.get("handled", ())),
                   doc.get("probed", ""), tuple(doc.get("accepted_forms", ())))

    def age(self, now: dt.datetime) -> dt.timedelta:
        try:
            when = dt.datetime.fromisoformat(self.probed)
        except ValueError:
            return dt.timedelta.max
        return now - when


def endpoint_of(storage) -> str:
    t = storage.target
    return t.endpoint_url or f"AWS {t.region or 'default region'}"


class _Probe:
    """One run of the probe on one fresh key."""

    def __init__(self, storage):
        self.storage = storage
        self.client, self.bucket = storage.client, storage.target.bucket
        self.key = storage._key(f".mxbuild-probe/{secrets.token_hex(8)}")
        self.name = self.key[len(storage._key("")):]
        self.where = f"{storage.describe()} ({endpoint_of(storage)})"
        self.problems: list[str] = []
        self.handled: list[str] = []
        self.headers: dict = {}

    def problem(self, text: str, handled: bool = False) -> None:
        self.problems.append(f"{self.where}: {text}")
        if handled:
            self.handled.append(self.problems[-1])

    def _call(self, action: str, call):
        """call() with the storage's retries; an answer that is no S3 answer at all (a
        connection failure) or a permission problem is a RepoError, as for every write."""
        try:
            return self.storage._do(call)
        except ClientError as exc:
            if _code(exc) in DENIED:
                raise self.storage._fail(action, self.name, exc)
            raise
        except BotoCoreError as exc:
            raise self.storage._fail(action, self.name, exc)

    def body(self) -> bytes | None:
        try:
            obj = self._call("GET", lambda: self.client.get_object(Bucket=self.bucket,
                                                                   Key=self.key))
        except ClientError:
            return None
        self.headers = obj["ResponseMetadata"].get("HTTPHeaders", self.headers)
        return obj["Body"].read()

    def etag(self) -> str | None:
        try:
            return self._call("HEAD", lambda: self.client.head_object(
                Bucket=self.bucket, Key=self.key))["ETag"]
        except ClientError:
            return None

    def put(self, body: bytes, **cond) -> tuple[str, str | None]:
        """("accepted", ETag) | ("refused", code) | ("error", code). A refusal whose
        object holds `body` afterwards was our own write whose answer was lost (retried,
        then refused): accepted."""
        try:
            resp = self._call("PUT", lambda: self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=body, **cond))
        except ClientError as exc:
            code = _code(exc)
            if code in PRECONDITION and self.body() == body:
                return "accepted", self.etag()
            return ("refused" if code in PRECONDITION else "error"), code
        self.headers = resp["ResponseMetadata"].get("HTTPHeaders", self.headers)
        return "accepted", resp["ETag"]

    def must_refuse(self, what: str, **cond) -> bool:
        """A write that must get 412: True if it was refused."""
        body = f"must not land {secrets.token_hex(4)}".encode()
        outcome, detail = self.put(body, **cond)
        if outcome == "refused":
            return True
        if outcome == "error":
            self.problem(f"{what} answered {detail} instead of 412 Precondition Failed")
        else:
            self.problem(f"{what} was ACCEPTED (expected 412 Precondition Failed): the "
                         "server ignores the precondition, so concurrent publishers would "
                         "overwrite each other's commits and lose packages")
        return False

    def run(self) -> Verdict:
        body = f"one {secrets.token_hex(4)}".encode()
        outcome, first = self.put(body, IfNoneMatch="*")          # create-only, new key
        if outcome != "accepted" or not first:
            self.problem(f"a PUT with If-None-Match: * on a new key answered {first} "
                         "(expected 200): the server cannot create a suite")
            return self.verdict(None, ())
        current, accepted, answers = first, [], {}
        for form in (QUOTED, UNQUOTED):                           # a current If-Match
            outcome, detail = self.put(f"{form} {secrets.token_hex(4)}".encode(),
                                       IfMatch=if_match_value(current, form))
            if outcome == "accepted" and detail:
                accepted.append(form)
                current = detail
            else:
                answers[form] = detail
        if QUOTED not in accepted:
            text = (f"answered {answers[QUOTED]} to a PUT whose If-Match holds the object's "
                    "current ETag, quoted as S3 returns it: the server refuses its own "
                    "current ETag")
            if UNQUOTED in accepted:
                self.problem(text + ", but accepts it unquoted (Ceph RGW up to reef 18.2.7, "
                             "fixed by ceph/ceph PR #63348): mxbuild sends If-Match unquoted "
                             "to this server", handled=True)
            else:
                self.problem(text + f" (unquoted: {answers[UNQUOTED]}), so no "
                             "compare-and-swap commit could ever succeed")
        form = QUOTED if QUOTED in accepted else UNQUOTED if accepted else None
        last = self.body()
        # a stale If-Match, in each form the server took when current (a form it refuses
        # anyway, say unquoted with 400, proves nothing and is never sent)
        for f in accepted or [QUOTED]:
            self.must_refuse(f"a PUT with a stale If-Match ({f})",
                             IfMatch=if_match_value(first, f))
        self.must_refuse("a PUT with If-None-Match: * on an existing key", IfNoneMatch="*")
        now = self.body()
        if last is not None and now != last:
            self.problem(f"the object holds {now!r} after the writes that had to be refused, "
                         f"not {last!r}")
        if accepted and unquoted(current) == unquoted(first):
            self.problem("the ETag did not change when the content did")
        return self.verdict(form, tuple(accepted))

    def verdict(self, form, accepted) -> Verdict:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)
        except (ClientError, BotoCoreError):
            pass
        return Verdict(endpoint_of(self.storage), identity(self.headers), form,
                       tuple(self.problems), tuple(self.handled),
                       dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       accepted)


def conditional_writes(storage) -> Verdict:
    """Probe the server behind an S3Storage (see the module docstring). Deviations are in
    the verdict, never raised; a connection failure or a denied request is a RepoError."""
    return _Probe(storage).run()


# ------------------------------------------------------------------ the cached verdict

def _cached(storage) -> tuple[dict, str]:
    """The repository's verdict document ({} if none) and the server's identity (from the
    headers of the same GET)."""
    client, bucket, key = storage.client, storage.target.bucket, storage._key(VERDICT_KEY)
    try:
        obj = storage._do(lambda: client.get_object(Bucket=bucket, Key=key))
    except ClientError as exc:
        if _code(exc) in ("NoSuchKey", "404", "NotFound"):
            return {}, identity(exc.response.get("ResponseMetadata", {})
                                .get("HTTPHeaders", {}))
        raise storage._fail("GET", VERDICT_KEY, exc)
    except BotoCoreError as exc:
        raise storage._fail("GET", VERDICT_KEY, exc)
    headers = obj["ResponseMetadata"].get("HTTPHeaders", {})
    try:
        doc = json.loads(obj["Body"].read())
    except ValueError:
        doc = {}
    return (doc if doc.get("format") == FORMAT else {}), identity(headers)


def ensure_safe(storage, now: dt.datetime | None = None) -> Verdict:
    """The verdict on the server behind `storage`, probed if need be; RepoError if
    publishing through it would lose packages or could never commit."""
    now = now or dt.datetime.now(dt.timezone.utc)
    doc, server = _cached(storage)
    endpoint = endpoint_of(storage)
    known = doc.get("verdicts", {}).get(endpoint)
    if known:
        verdict = Verdict.from_json(known)
        if verdict.server == server and verdict.safe and verdict.age(now) < MAX_AGE:
            log.debug("%s: cached verdict of %s (%s): If-Match %s", storage.describe(),
                      endpoint, server, verdict.if_match)
            return verdict
        log.info("%s: probing %s again (%s)", storage.describe(), endpoint,
                 "its identity changed" if verdict.server != server else "verdict expired")
    verdict = conditional_writes(storage)
    if not verdict.safe:
        raise unsafe_error(storage, verdict)
    for problem in verdict.handled:
        log.warning("%s", problem)
    doc = {"format": FORMAT, "verdicts": {**doc.get("verdicts", {}),
                                          endpoint: verdict.to_json()}}
    storage.put_unchecked(VERDICT_KEY, (json.dumps(doc, indent=1, sort_keys=True) + "\n")
                         .encode())
    return verdict


def forget(storage) -> None:
    """Drop the cached verdicts (the next write of any process probes again)."""
    try:
        storage._do(lambda: storage.client.delete_object(
            Bucket=storage.target.bucket, Key=storage._key(VERDICT_KEY)))
    except (ClientError, BotoCoreError) as exc:
        log.warning("could not drop %s/%s: %s", storage.describe(), VERDICT_KEY, exc)


def unsafe_error(storage, verdict: Verdict) -> RepoError:
    return RepoError(
        f"{storage.describe()}: the S3 server at {verdict.endpoint} ({verdict.server}) does "
        "not honour conditional writes, so nothing was published:\n  "
        + "\n  ".join(verdict.refusals),
        "publish to a server that refuses a stale If-Match and If-None-Match: * on an "
        "existing key with 412 (AWS S3, SeaweedFS, Ceph RGW on RADOS — not RGW's dbstore "
        "backend); or publish to a local directory (`--to DIR`) and copy it to the bucket "
        "with one writer at a time")
