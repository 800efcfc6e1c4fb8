#!/usr/bin/env python3
"""Interop check: Google's Python API client batching against the farm example.

Usage:
    google_batch.py [ADDR] [--token TOKEN] [--discovery PATH]
                    [--batch-path PATH] [--no-strict]

    ADDR         HOST:PORT or http://HOST:PORT/ of a running farm server
                 (`cargo run --example farm`); default $FARM_ADDR, else
                 127.0.0.1:3000.
    --token      the server's FARM_TOKEN, if it runs with one (default
                 $FARM_TOKEN). With a token the credential scenarios run.
    --discovery  discovery document (default: farm_discovery.json beside this
                 script). Its rootUrl and baseUrl are rewritten to ADDR.
    --batch-path batchPath to use (default: the document's, batch/farm/v1).
    --no-strict  skip strict_check.validate() on every raw batch response.

Needs google-api-python-client, google-auth, google-auth-httplib2 and
httplib2 (scripts/python-venv.sh makes a venv with them).

Builds the client with googleapiclient.discovery.build_from_document() and
sends batches with service.new_batch_http_request() / BatchHttpRequest.add(
request, callback=..., request_id=...) / execute(). Scenarios:

  basic          list animals, get pony, get a missing animal (HttpError 404),
                 insert an animal, list farmers; every callback must get its
                 own response.
  long_ids       request_ids of 120+ characters, so the email generator folds
                 the Content-ID headers of the request parts.
  conditional    If-None-Match -> 304, stale If-Match -> 412, matching
                 If-Match -> 200, delete -> 204 (the client's RawModel maps it
                 to "").
  generic_path   a small batch sent to /batch instead of /batch/farm/v1.
  inherit        the outer request's Authorization header reaches the parts
                 (checked through the /farm/v1/whoami test route).
  with token only:
  auth_outer     AuthorizedHttp on the outer request only: all items succeed.
  auth_none      no credentials: every item gets HttpError 401 with
                 WWW-Authenticate: Bearer (the client resends them once
                 anyway, with nothing to refresh).
  auth_refresh   credentials start with a wrong token: all items get 401, the
                 client calls refresh() once and resends only those items in a
                 second batch, which succeeds.
  auth_part      each part carries its own (right) Authorization while the
                 outer request carries a wrong one: the part's header wins.

Prints one JSON object {"ok", "server", "token", "scenarios": {...},
"failures": [...]}. Exits 1 on any mismatch (the reasons are in "failures"
and on stderr), 2 on usage errors.
"""

import argparse
import json
import os
import sys
import traceback
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import httplib2  # noqa: E402
import google.auth.credentials  # noqa: E402
import google_auth_httplib2  # noqa: E402
from googleapiclient import discovery  # noqa: E402
from googleapiclient.errors import HttpError  # noqa: E402
from googleapiclient.http import HttpRequest  # noqa: E402
from googleapiclient.model import JsonModel  # noqa: E402

import strict_check  # noqa: E402

TIMEOUT = 30


class Mismatch(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Mismatch(message)


# --------------------------------------------------------------------------
# HTTP plumbing


class RecordingHttp(httplib2.Http):
    """httplib2.Http that records every exchange and can add fixed headers
    to every outgoing request (as an outer-request header for a batch)."""

    def __init__(self, extra_headers=None):
        super().__init__(timeout=TIMEOUT)
        self.extra_headers = dict(extra_headers or {})
        self.exchanges = []

    def request(self, uri, method="GET", body=None, headers=None, *args, **kwargs):
        headers = dict(headers or {})
        for k, v in self.extra_headers.items():
            headers.setdefault(k, v)
        resp, content = super().request(uri, method, body, headers, *args, **kwargs)
        self.exchanges.append(
            {
                "uri": uri,
                "method": method,
                "headers": headers,
                "body": body,
                "resp": resp,
                "content": content,
            }
        )
        return resp, content

    def batch_posts(self):
        return [x for x in self.exchanges if x["method"] == "POST" and "/batch" in x["uri"]]


class StaticToken(google.auth.credentials.Credentials):
    """Credentials with a fixed token; refresh() changes nothing."""

    def __init__(self, token):
        super().__init__()
        self.token = token
        self.refreshes = 0

    def refresh(self, request):
        self.refreshes += 1


class RefreshingToken(google.auth.credentials.Credentials):
    """Starts with a wrong token; refresh() switches to the right one."""

    def __init__(self, wrong, right):
        super().__init__()
        self.token = wrong
        self._right = right
        self.refreshes = 0

    def refresh(self, request):
        self.refreshes += 1
        self.token = self._right


def authorized(creds):
    """AuthorizedHttp over a RecordingHttp; returns (authed, recorder)."""
    rec = RecordingHttp()
    return google_auth_httplib2.AuthorizedHttp(creds, http=rec), rec


# --------------------------------------------------------------------------
# Client setup


def load_discovery(path, base, batch_path):
    with open(path) as f:
        doc = json.load(f)
    doc["rootUrl"] = base
    doc["baseUrl"] = urllib.parse.urljoin(base, doc["servicePath"])
    if batch_path is not None:
        doc["batchPath"] = batch_path.lstrip("/")
    return doc


def build(doc, http):
    return discovery.build_from_document(doc, http=http)


class Collector:
    """Batch callback that stores (response, exception) by request id."""

    def __init__(self):
        self.got = {}
        self.calls = []

    def __call__(self, request_id, response, exception):
        self.calls.append(request_id)
        check(request_id not in self.got, "callback called twice for %r" % request_id)
        self.got[request_id] = (response, exception)

    def ok(self, rid):
        check(rid in self.got, "no callback for %r" % rid)
        resp, exc = self.got[rid]
        if exc is not None:
            raise Mismatch(
                "%r: expected success, got HttpError %s: %s"
                % (rid, exc.resp.status, exc.content[:300])
            )
        return resp

    def error(self, rid, status):
        check(rid in self.got, "no callback for %r" % rid)
        resp, exc = self.got[rid]
        check(
            isinstance(exc, HttpError),
            "%r: expected HttpError %d, got response %r" % (rid, status, resp),
        )
        check(
            exc.resp.status == status,
            "%r: expected HttpError %d, got %d: %s"
            % (rid, status, exc.resp.status, exc.content[:300]),
        )
        return exc


class Runner:
    def __init__(self, args):
        self.args = args
        self.base = args.base
        self.token = args.token
        self.strict = not args.no_strict
        self.doc = load_discovery(args.discovery, self.base, args.batch_path)
        self.results = {}
        self.failures = []
        self.suffix = uuid.uuid4().hex[:8]
        self.strict_checked = 0

    # Outer-request http for the common scenarios: carries the token if the
    # server needs one.
    def outer_http(self):
        if self.token is None:
            rec = RecordingHttp()
            return rec, rec
        return authorized(StaticToken(self.token))

    def plain_service(self):
        return build(self.doc, RecordingHttp())

    def whoami(self, service_http, query="probe=1", headers=None):
        uri = urllib.parse.urljoin(self.doc["baseUrl"], "whoami") + "?" + query
        return HttpRequest(
            service_http,
            JsonModel().response,
            uri,
            method="GET",
            headers=dict(headers or {}),
        )

    def strict_validate(self, rec):
        """Run strict_check on every batch response that rec saw."""
        if not self.strict:
            return
        for x in rec.batch_posts():
            if x["resp"].status != 200:
                continue
            try:
                strict_check.validate(x["resp"]["content-type"], x["content"])
            except strict_check.StrictError as e:
                raise Mismatch("strict_check on the batch response: %s" % e)
            self.strict_checked += 1

    def run(self, name, fn):
        try:
            detail = fn() or {}
            detail["ok"] = True
        except Mismatch as e:
            detail = {"ok": False, "error": str(e)}
            self.failures.append("%s: %s" % (name, e))
        except Exception as e:  # transport errors, BatchError, ...
            detail = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
            detail["traceback"] = traceback.format_exc()
            self.failures.append("%s: %s: %s" % (name, type(e).__name__, e))
        self.results[name] = detail

    # ----------------------------------------------------------------------
    # Scenarios

    def basic(self):
        service = self.plain_service()
        http, rec = self.outer_http()
        col = Collector()
        batch = service.new_batch_http_request()
        check(
            batch._batch_uri == self.base + self.doc["batchPath"],
            "batch URI is %r" % batch._batch_uri,
        )
        name = "duck" + self.suffix
        batch.add(service.animals().list(), callback=col, request_id="list")
        batch.add(service.animals().get(animalName="pony"), callback=col, request_id="pony")
        batch.add(service.animals().get(animalName="unicorn" + self.suffix), callback=col, request_id="missing")
        batch.add(
            service.animals().insert(body={"animalName": name, "animalAge": 2, "peltColor": "white"}),
            callback=col,
            request_id="insert",
        )
        batch.add(service.farmers().list(), callback=col, request_id="farmers")
        batch.execute(http=http)

        check(col.calls == ["list", "pony", "missing", "insert", "farmers"], "callback order %r" % col.calls)

        lst = col.ok("list")
        check(lst.get("kind") == "farm#animalList", "list kind %r" % lst)
        names = [a["animalName"] for a in lst["items"]]
        check({"pony", "sheep", "cow"} <= set(names), "list items %r" % names)
        check(names == sorted(names), "list not sorted: %r" % names)

        pony = col.ok("pony")
        check(
            pony.get("kind") == "farm#animal"
            and pony.get("animalName") == "pony"
            and pony.get("animalAge") == 34
            and pony.get("peltColor") == "white",
            "pony %r" % pony,
        )
        check(pony.get("selfLink") == "/farm/v1/animals/pony", "pony selfLink %r" % pony)
        etag = pony.get("etag", "")
        check(len(etag) > 2 and etag[0] == '"' and etag[-1] == '"', "pony etag %r" % etag)

        exc = col.error("missing", 404)
        err = json.loads(exc.content)
        check(
            err.get("error", {}).get("code") == 404 and err["error"].get("status") == "NOT_FOUND",
            "404 body %r" % err,
        )

        ins = col.ok("insert")
        check(ins.get("animalName") == name and ins.get("animalAge") == 2, "insert %r" % ins)

        farmers = col.ok("farmers")
        check(
            farmers.get("kind") == "farm#farmerList" and farmers.get("items"),
            "farmers %r" % farmers,
        )
        # More than one POST means some items got 401 and were resent.
        check(len(rec.batch_posts()) == 1, "expected 1 batch POST, saw %d" % len(rec.batch_posts()))
        self.strict_validate(rec)
        self.created = name
        return {"items": 5, "inserted": name, "statuses": {"missing": 404}}

    def long_ids(self):
        service = self.plain_service()
        http, rec = self.outer_http()
        col = Collector()
        batch = service.new_batch_http_request()
        ids = {
            "pony": "long request id for pony/" + "p" * 120 + "/end",
            "sheep": "long_request_id_without_spaces_for_sheep_" + "s" * 100,
            "missing": "ünïcödé long id " + "m" * 110,
        }
        for rid in ids.values():
            check(len(rid) >= 120, "request_id too short")
        batch.add(service.animals().get(animalName="pony"), callback=col, request_id=ids["pony"])
        batch.add(service.animals().get(animalName="sheep"), callback=col, request_id=ids["sheep"])
        batch.add(service.animals().get(animalName="nobody" + self.suffix), callback=col, request_id=ids["missing"])
        batch.execute(http=http)

        posts = rec.batch_posts()
        body = posts[0]["body"]
        body = body if isinstance(body, str) else body.decode("utf-8")
        folded = [
            line for line in body.split("\n") if line.lower().startswith("content-id:") and line.rstrip().endswith("+")
        ]
        check(folded, "the request's Content-ID headers were not folded; the scenario tests nothing")

        check(col.ok(ids["pony"]).get("animalName") == "pony", "pony by long id")
        check(col.ok(ids["sheep"]).get("animalName") == "sheep", "sheep by long id")
        col.error(ids["missing"], 404)
        check(len(posts) == 1, "expected 1 batch POST, saw %d" % len(posts))
        self.strict_validate(rec)
        return {"idLengths": sorted(len(i) for i in ids.values()), "foldedContentIds": len(folded)}

    def conditional(self):
        service = self.plain_service()
        http, rec = self.outer_http()
        pony_etag = sheep = None
        # Read the current etags with a first batch.
        col = Collector()
        batch = service.new_batch_http_request()
        batch.add(service.animals().get(animalName="pony"), callback=col, request_id="pony")
        batch.add(service.animals().get(animalName="sheep"), callback=col, request_id="sheep")
        target = "goat" + self.suffix
        victim = "hen" + self.suffix
        batch.add(service.animals().insert(body={"animalName": target, "animalAge": 1}), callback=col, request_id="t")
        batch.add(service.animals().insert(body={"animalName": victim}), callback=col, request_id="v")
        batch.execute(http=http)
        pony_etag = col.ok("pony")["etag"]
        sheep = col.ok("sheep")
        target_etag = col.ok("t")["etag"]
        col.ok("v")

        col = Collector()
        batch = service.new_batch_http_request()
        r = service.animals().get(animalName="pony")
        r.headers["if-none-match"] = pony_etag
        batch.add(r, callback=col, request_id="not-modified")
        r = service.animals().get(animalName="sheep")
        r.headers["if-none-match"] = '"not-the-etag"'
        batch.add(r, callback=col, request_id="modified")
        r = service.animals().update(animalName="pony", body={"animalAge": 99})
        r.headers["if-match"] = '"stale"'
        batch.add(r, callback=col, request_id="stale-update")
        r = service.animals().update(animalName=target, body={"animalAge": 2, "peltColor": "brown"})
        r.headers["if-match"] = target_etag
        batch.add(r, callback=col, request_id="update")
        batch.add(service.animals().delete(animalName=victim), callback=col, request_id="delete")
        batch.execute(http=http)

        exc = col.error("not-modified", 304)
        check(exc.content in (b"", ""), "304 carried a body: %r" % exc.content)
        check(col.ok("modified") == sheep, "sheep changed? %r" % col.ok("modified"))
        col.error("stale-update", 412)
        upd = col.ok("update")
        check(
            upd.get("animalName") == target and upd.get("animalAge") == 2 and upd.get("peltColor") == "brown",
            "update %r" % upd,
        )
        check(upd.get("etag") != target_etag, "etag did not change on update")
        # delete has no response schema, so the client uses RawModel, whose
        # 204 result is "".
        check(col.ok("delete") == "", "delete gave %r" % col.ok("delete"))
        self.strict_validate(rec)

        # Tidy up what this run created (not part of the checks' order).
        col = Collector()
        batch = service.new_batch_http_request()
        for n in (target, getattr(self, "created", None)):
            if n:
                batch.add(service.animals().delete(animalName=n), callback=col, request_id=n)
        batch.execute(http=http)
        for n in col.got:
            col.ok(n)
        return {"statuses": {"not-modified": 304, "stale-update": 412, "delete": 204}}

    def generic_path(self):
        doc = dict(self.doc, batchPath="batch")
        service = build(doc, RecordingHttp())
        http, rec = self.outer_http()
        col = Collector()
        batch = service.new_batch_http_request()
        check(batch._batch_uri == self.base + "batch", "batch URI %r" % batch._batch_uri)
        batch.add(service.animals().get(animalName="cow"), callback=col, request_id="cow")
        batch.add(service.farmers().list(), callback=col, request_id="farmers")
        batch.execute(http=http)
        check(col.ok("cow").get("peltColor") == "black", "cow %r" % col.ok("cow"))
        check(col.ok("farmers").get("kind") == "farm#farmerList", "farmers")
        self.strict_validate(rec)
        return {"batchUri": batch._batch_uri}

    def inherit(self):
        token = self.token if self.token is not None else "outer-token"
        service_http = RecordingHttp()
        service = build(self.doc, service_http)
        rec = RecordingHttp(extra_headers={"Authorization": "Bearer " + token})
        col = Collector()
        batch = service.new_batch_http_request()
        batch.add(self.whoami(service_http), callback=col, request_id="inherited")
        batch.add(
            self.whoami(service_http, query="own=2", headers={"authorization": "Bearer " + token, "x-request-id": "part-7"}),
            callback=col,
            request_id="own",
        )
        batch.execute(http=rec)
        seen = col.ok("inherited")
        check(
            seen.get("authorization") == "Bearer " + token,
            "part did not inherit the outer Authorization: %r" % seen,
        )
        check(seen.get("query") == "probe=1", "part query %r" % seen)
        own = col.ok("own")
        check(own.get("authorization") == "Bearer " + token and own.get("requestId") == "part-7", "own %r" % own)
        check(own.get("query") == "own=2", "part query %r" % own)
        self.strict_validate(rec)
        return {"inherited": seen, "own": own}

    # -- token scenarios ----------------------------------------------------

    def token_batch(self, service, col):
        batch = service.new_batch_http_request()
        batch.add(service.animals().list(), callback=col, request_id="list")
        batch.add(service.animals().get(animalName="pony"), callback=col, request_id="pony")
        batch.add(service.farmers().list(), callback=col, request_id="farmers")
        return batch

    def token_ok(self, col):
        check(col.ok("list").get("kind") == "farm#animalList", "list")
        check(col.ok("pony").get("animalName") == "pony", "pony")
        check(col.ok("farmers").get("kind") == "farm#farmerList", "farmers")

    def auth_outer(self):
        service = self.plain_service()
        creds = StaticToken(self.token)
        http, rec = authorized(creds)
        col = Collector()
        self.token_batch(service, col).execute(http=http)
        self.token_ok(col)
        posts = rec.batch_posts()
        check(len(posts) == 1, "expected 1 batch POST, saw %d" % len(posts))
        check(
            posts[0]["headers"].get("authorization") == "Bearer " + self.token,
            "outer Authorization %r" % posts[0]["headers"].get("authorization"),
        )
        check(creds.refreshes == 0, "refresh() was called %d times" % creds.refreshes)
        self.strict_validate(rec)
        return {"batchPosts": len(posts)}

    def auth_none(self):
        service = self.plain_service()
        rec = RecordingHttp()
        col = Collector()
        self.token_batch(service, col).execute(http=rec)
        for rid in ("list", "pony", "farmers"):
            exc = col.error(rid, 401)
            www = exc.resp.get("www-authenticate", "")
            check(www.lower().startswith("bearer"), "%s: WWW-Authenticate %r" % (rid, www))
            err = json.loads(exc.content)
            check(err.get("error", {}).get("code") == 401, "%s: body %r" % (rid, err))
        # Without credentials the client still resends the 401 items once.
        posts = rec.batch_posts()
        check(len(posts) == 2, "expected 2 batch POSTs (first try, resend), saw %d" % len(posts))
        self.strict_validate(rec)
        return {"statuses": [401, 401, 401]}

    def auth_refresh(self):
        service = self.plain_service()
        creds = RefreshingToken("wrong-" + self.suffix, self.token)
        http, rec = authorized(creds)
        col = Collector()
        self.token_batch(service, col).execute(http=http)
        self.token_ok(col)
        check(creds.refreshes == 1, "refresh() was called %d times, expected 1" % creds.refreshes)
        posts = rec.batch_posts()
        check(len(posts) == 2, "expected 2 batch POSTs (first try, retry), saw %d" % len(posts))
        auths = [p["headers"].get("authorization") for p in posts]
        check(
            auths == ["Bearer wrong-" + self.suffix, "Bearer " + self.token],
            "outer Authorization per POST %r" % auths,
        )
        # The retry resends exactly the three failed items.
        retry = posts[1]["body"]
        retry = retry if isinstance(retry, str) else retry.decode("utf-8")
        check(retry.count("application/http") == 3, "retry batch does not hold 3 parts")
        self.strict_validate(rec)
        return {"refreshes": creds.refreshes, "batchPosts": len(posts)}

    def auth_part(self):
        # Each part's own Authorization (set by _serialize_request from the
        # service's AuthorizedHttp) must win over the outer request's one.
        part_creds = StaticToken(self.token)
        part_http, _ = authorized(part_creds)
        service = build(self.doc, part_http)
        outer_creds = StaticToken("outer-wrong-" + self.suffix)
        outer_http, rec = authorized(outer_creds)
        col = Collector()
        batch = self.token_batch(service, col)
        batch.add(self.whoami(part_http), callback=col, request_id="whoami")
        batch.execute(http=outer_http)
        self.token_ok(col)
        check(
            col.ok("whoami").get("authorization") == "Bearer " + self.token,
            "whoami saw %r" % col.ok("whoami"),
        )
        posts = rec.batch_posts()
        check(len(posts) == 1, "expected 1 batch POST (no 401 retry), saw %d" % len(posts))
        self.strict_validate(rec)
        return {"batchPosts": len(posts)}

    def main(self):
        self.run("basic", self.basic)
        self.run("long_ids", self.long_ids)
        self.run("conditional", self.conditional)
        self.run("generic_path", self.generic_path)
        self.run("inherit", self.inherit)
        if self.token is not None:
            self.run("auth_outer", self.auth_outer)
            self.run("auth_none", self.auth_none)
            self.run("auth_refresh", self.auth_refresh)
            self.run("auth_part", self.auth_part)
        summary = {
            "ok": not self.failures,
            "server": self.base,
            "token": self.token is not None,
            "strictChecked": self.strict_checked,
            "scenarios": self.results,
            "failures": self.failures,
        }
        print(json.dumps(summary, indent=None, default=str))
        for f in self.failures:
            print("google_batch: FAIL: %s" % f, file=sys.stderr)
        return 0 if not self.failures else 1


def normalize_base(addr):
    if "://" not in addr:
        addr = "http://" + addr
    parsed = urllib.parse.urlparse(addr)
    if not parsed.hostname or not parsed.port:
        raise ValueError("expected HOST:PORT or http://HOST:PORT/, got %r" % addr)
    return "%s://%s/" % (parsed.scheme, parsed.netloc)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Google API client batch interop check against the farm example.")
    ap.add_argument("addr", nargs="?", default=os.environ.get("FARM_ADDR", "127.0.0.1:3000"))
    ap.add_argument("--token", default=os.environ.get("FARM_TOKEN") or None)
    ap.add_argument("--discovery", default=os.path.join(HERE, "farm_discovery.json"))
    ap.add_argument("--batch-path", default=None)
    ap.add_argument("--no-strict", action="store_true")
    args = ap.parse_args(argv)
    try:
        args.base = normalize_base(args.addr)
    except ValueError as e:
        ap.error(str(e))
    return Runner(args).main()


if __name__ == "__main__":
    sys.exit(main())
