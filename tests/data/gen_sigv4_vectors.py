#!/usr/bin/env python3
"""Generates sigv4_vectors.json: Invoke requests and the Authorization header botocore's
SigV4Auth computes for them, with fixed credentials and time. An oracle independent of
aws-sigv4 for tests/sigv4_oracle.rs.

Run: python3 tests/data/gen_sigv4_vectors.py > tests/data/sigv4_vectors.json
(needs botocore, which moto's install brings)."""
import datetime
import json
from unittest import mock
from urllib.parse import quote

import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN/+=="
WHEN = datetime.datetime(2026, 1, 15, 12, 34, 56, tzinfo=datetime.timezone.utc)
BIG = 1024 * 1024


def label(s):
    return quote(s, safe="-._~")


def body_bytes(spec):
    if spec["kind"] == "text":
        return spec["value"].encode()
    return (spec["wrap"] + spec["fill"] * (spec["len"] - 2 * len(spec["wrap"])) + spec["wrap"]).encode()


def case(name, function, body, region="us-east-1", qualifier=None, token=False, headers=None):
    path = f"/2015-03-31/functions/{label(function)}/invocations"
    if qualifier is not None:
        path += f"?Qualifier={label(qualifier)}"
    host = f"lambda.{region}.amazonaws.com"
    data = body_bytes(body)
    hdrs = {
        "host": host,
        "x-amz-invocation-type": "RequestResponse",
        "content-type": "application/octet-stream",
        "content-length": str(len(data)),
    }
    hdrs.update(headers or {})
    req = AWSRequest(method="POST", url=f"https://{host}{path}", headers=dict(hdrs), data=data)
    creds = Credentials(KEY, SECRET, TOKEN if token else None)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=WHEN.replace(tzinfo=None)):
        botocore.auth.SigV4Auth(creds, "lambda", region).add_auth(req)
    return {
        "name": name,
        "region": region,
        "function_name": function,
        "qualifier": qualifier,
        "session_token": TOKEN if token else None,
        "method": "POST",
        "url": f"https://{host}{path}",
        "headers": hdrs,
        "body": body,
        "expected": {
            "x-amz-date": req.headers["X-Amz-Date"],
            "authorization": req.headers["Authorization"],
        },
    }


small = {"kind": "text", "value": '{"key":"value"}'}
arn = "arn:aws:lambda:us-east-1:123456789012:function:my-function"
vectors = {
    "generator": f"botocore {botocore.__version__} SigV4Auth",
    "access_key_id": KEY,
    "secret_access_key": SECRET,
    "time": WHEN.strftime("%Y%m%dT%H%M%SZ"),
    "cases": [
        case("plain name", "my-function", small),
        case("partial ARN", "123456789012:function:my-function", small),
        case("full ARN with alias", arn + ":prod", small),
        case("full ARN with $LATEST", arn + ":$LATEST", small),
        case("Qualifier $LATEST", "my-function", small, qualifier="$LATEST"),
        case("Qualifier version", arn, small, qualifier="7"),
        case("empty payload", "my-function", {"kind": "text", "value": ""}),
        case("1 MiB payload", "my-function", {"kind": "repeat", "fill": "a", "len": BIG, "wrap": '"'}),
        case("session token", "my-function", small, token=True),
        case(
            "every header",
            "my-function",
            small,
            token=True,
            headers={
                "x-amz-invocation-type": "RequestResponse",
                "x-amz-log-type": "Tail",
                "x-amz-client-context": "eyJjdXN0b20iOnsiayI6InYifX0=",
                "x-amz-tenant-id": "tenant a/b=c+d:e@f",
                "x-amz-durable-execution-name": "run-2026-01-15",
            },
        ),
        case("Event", "my-function", small, headers={"x-amz-invocation-type": "Event"}),
        case(
            "DryRun in eu-west-1",
            "arn:aws:lambda:eu-west-1:123456789012:function:f",
            {"kind": "text", "value": ""},
            region="eu-west-1",
            headers={"x-amz-invocation-type": "DryRun"},
        ),
    ],
}
print(json.dumps(vectors, indent=1))
