#!/usr/bin/python3
"""An unmodified boto3 application, as a pod would run it.

boto3's default session and nothing else configured: botocore's own credential
chain decides where credentials come from (the container endpoint named by
AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI, or instance metadata).
The e2e suite runs it with Debian's python3-boto3 inside a pod's network
namespace.

It writes E2E_BODY to s3://E2E_BUCKET/E2E_KEY on E2E_S3_ENDPOINT, reads it
back, and prints one JSON line: the library versions, the provider that
answered (botocore's credential "method") and the subject of the session token
(MinIO's session tokens are JWTs naming the pod's ServiceAccount).
"""

import base64
import json
import os
import platform
import sys

import boto3
import botocore
from botocore.config import Config


def subject(token):
    parts = (token or "").split(".")
    if len(parts) != 3:
        return ""
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        return json.loads(base64.urlsafe_b64decode(payload)).get("sub", "")
    except ValueError:
        return ""


def main():
    result = {
        "client": "boto3",
        "version": "boto3 %s, botocore %s, python %s"
        % (boto3.__version__, botocore.__version__, platform.python_version()),
        "ok": False,
    }
    try:
        bucket, key, body = os.environ["E2E_BUCKET"], os.environ["E2E_KEY"], os.environ["E2E_BODY"]
        session = boto3.session.Session()
        creds = session.get_credentials()
        if creds is None:
            raise RuntimeError("the default chain found no credentials")
        result["provider"] = creds.method
        result["sub"] = subject(creds.get_frozen_credentials().token)
        s3 = session.client(
            "s3",
            endpoint_url=os.environ["E2E_S3_ENDPOINT"],
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        if got != body:
            raise RuntimeError("read back %d bytes that differ from the %d written" % (len(got), len(body)))
        result["ok"] = True
    except Exception as e:  # report every failure as data, for the compatibility table
        result["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
