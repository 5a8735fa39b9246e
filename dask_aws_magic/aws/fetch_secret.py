"""Run on a cluster's EC2 instance at boot: fetch the cluster's node secret from AWS Secrets Manager
with the instance role's credentials, and write this role's TLS files and environment.

    python3 fetch_secret.py SECRET_NAME ROLE FOLDER

Standard library only (the image may have nothing else), and never prints what it fetched. The
instance's credentials, region and (outside AWS) endpoint come from the instance metadata service
and the usual AWS variables, as boto3 would find them. A role just created may take seconds to be
usable by a new instance (IAM is eventually consistent), so refusals are retried for a while.
"""

import datetime
import hashlib
import hmac
import json
import os
import shlex
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

PATIENCE = 120.0  # seconds to wait for the role's credentials and permission to reach this instance
IMDS = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254/")


def metadata(path, token):
    request = urllib.request.Request(IMDS + "latest/" + path, headers={"X-aws-ec2-metadata-token": token})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return reply.read().decode()


def imds_token():
    request = urllib.request.Request(IMDS + "latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return reply.read().decode()


def credentials(token):
    """The instance role's temporary credentials."""
    role = metadata("meta-data/iam/security-credentials/", token).split("\n")[0].strip()
    if not role:
        raise LookupError("the instance has no role")
    return json.loads(metadata("meta-data/iam/security-credentials/" + role, token))


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def get_secret_value(name, region, creds):
    """Secrets Manager's GetSecretValue, signed with Signature Version 4."""
    endpoint = (os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER") or os.environ.get("AWS_ENDPOINT_URL")
                or f"https://secretsmanager.{region}.amazonaws.com").rstrip("/") + "/"
    host = urlparse(endpoint).netloc
    body = json.dumps({"SecretId": name}).encode()
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {"content-type": "application/x-amz-json-1.1", "host": host, "x-amz-date": amz_date,
               "x-amz-target": "secretsmanager.GetSecretValue"}
    if creds.get("Token"):
        headers["x-amz-security-token"] = creds["Token"]
    signed = ";".join(sorted(headers))
    canonical = "\n".join(["POST", urlparse(endpoint).path or "/", "",
                           "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed,
                           hashlib.sha256(body).hexdigest()])
    scope = f"{day}/{region}/secretsmanager/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + creds["SecretAccessKey"]).encode(), day), region), "secretsmanager"),
                "aws4_request")
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}".format(
        creds["AccessKeyId"], scope, signed, hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest())
    request = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(json.loads(reply.read().decode())["SecretString"])


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def main(name, role, folder):
    deadline = time.monotonic() + PATIENCE
    while True:
        step = "asking the instance metadata service for the role's credentials"
        try:
            token = imds_token()
            region = metadata("meta-data/placement/region", token)
            creds = credentials(token)
            step = "asking Secrets Manager"
            secret = get_secret_value(name, region, creds)
            break
        except (OSError, LookupError, ValueError) as exc:  # no role yet, or IAM not yet consistent
            reason = f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else type(exc).__name__
            if time.monotonic() > deadline:
                print(f"dask-aws-magic: could not read the cluster's secret {name}: {reason} while {step}")
                return 1
            time.sleep(2)
    if "ca" in secret:  # absent when the profile turned TLS off
        write_private(os.path.join(folder, "ca.pem"), secret["ca"])
        write_private(os.path.join(folder, "node.pem"), secret[role + "_cert"])
        write_private(os.path.join(folder, "node.key"), secret[role + "_key"])
    env = json.loads(secret.get("env") or "{}")
    write_private(os.path.join(folder, "env.sh"),
                  "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items())))
    write_private(os.path.join(folder, "env.names"), "".join(k + "\n" for k in sorted(env)))
    for file, text in json.loads(secret.get("files") or "{}").items():  # e.g. the software sync script
        write_private(os.path.join(folder, os.path.basename(file)), text)
    print("dask-aws-magic: read the cluster's secret")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
