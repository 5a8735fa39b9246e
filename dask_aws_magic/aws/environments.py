"""Where synced environments live: one S3 bucket per account and region, which ``up`` creates when
missing (tagged, public access blocked, encrypted, objects expiring) and ``down`` leaves (a cache).

Per environment key, under ``envs/KEY/``: ``lock.json`` (written last: its presence means the rest is
there), ``wheels/`` (the kernel's local projects, built on the laptop) and ``archives/FINGERPRINT.tar``
(the installed packages for one node image, written once by a node). The nodes of a cluster may read
their key's objects and add archives under it, never replace one (``If-None-Match: *``), and touch no
other key.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .errors import error_code

PREFIX = "envs"
EXPIRE_DAYS = 30  # an environment unused this long is rebuilt by the next `up` that wants it
TAG_PURPOSE = "dask-aws-magic:purpose"
PURPOSE = "environments"


def bucket_name(account: str, region: str) -> str:
    """The environments bucket of ``account`` in ``region`` (bucket names are global: the account makes it ours)."""
    return f"dask-aws-magic-envs-{account}-{region}"


def account_of(arn: str) -> str:
    """The account id in an ARN (``arn:aws:iam::123456789012:user/x``)."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else "000000000000"


def partition_of(arn: str) -> str:
    return arn.split(":")[1] if arn.startswith("arn:") else "aws"


def object_arn(partition: str, bucket: str, key: str) -> str:
    return f"arn:{partition}:s3:::{bucket}/{key}"


def owner_of(bucket: str) -> str:
    """The account an environments bucket must belong to (its name says it): every call names it as the
    expected owner, so a bucket of that name made by someone else is never read or written."""
    return bucket[len("dask-aws-magic-envs-"):].split("-", 1)[0]


def exists(s3: Any, bucket: str) -> bool:
    """Whether the bucket exists in its own account; a LaunchError when the name is another account's."""
    from ..core.errors import LaunchError

    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=owner_of(bucket))
    except Exception as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied"):
            raise LaunchError(
                f"The S3 bucket {bucket}, where software.sync keeps environments, exists but not in account "
                f"{owner_of(bucket)} (or this identity may not use it): nothing was stored there. If it is "
                "yours, ask for s3:ListBucket on it; else set `software.sync: false` (or `software.image`)."
            ) from None
        raise
    return True


def ensure_bucket(s3: Any, bucket: str, region: str, tags: list[dict[str, str]]) -> bool:
    """Create the environments bucket unless it exists; True if created. Public access blocked, default
    encryption, a lifecycle rule expiring environments after ``EXPIRE_DAYS`` days, tags."""
    if exists(s3, bucket):
        return False
    options: dict[str, Any] = {}
    if region != "us-east-1":
        options["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(Bucket=bucket, **options)
    except Exception as exc:
        if error_code(exc) != "BucketAlreadyOwnedByYou":  # another `up` made it a moment ago
            raise
        return False
    owner = {"ExpectedBucketOwner": owner_of(bucket)}
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True},
        **owner)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}, **owner)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
        "ID": "expire-old-environments", "Status": "Enabled", "Filter": {"Prefix": f"{PREFIX}/"},
        "Expiration": {"Days": EXPIRE_DAYS}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]},
        **owner)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags}, **owner)
    return True


def bucket_tags(owner: str) -> list[dict[str, str]]:
    """The bucket is the account's, shared by every cluster: tagged by purpose and by who made it."""
    from .tags import TAG_OWNER

    return [{"Key": TAG_PURPOSE, "Value": PURPOSE}, {"Key": TAG_OWNER, "Value": owner}]


def publish(s3: Any, bucket: str, lock: dict[str, Any], wheels: list[str]) -> bool:
    """Store the lock and its local wheels under the lock's key unless already there; True if stored."""
    key = lock["key"]
    owner = {"ExpectedBucketOwner": owner_of(bucket)}
    try:
        s3.head_object(Bucket=bucket, Key=f"{PREFIX}/{key}/lock.json", **owner)
        return False
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
            raise
    for path in wheels:
        with open(path, "rb") as data:
            s3.put_object(Bucket=bucket, Key=f"{PREFIX}/{key}/wheels/{os.path.basename(path)}", Body=data,
                          **owner)
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/{key}/lock.json", Body=json.dumps(lock).encode(),
                  ContentType="application/json", **owner)
    return True


def node_policy(partition: str, bucket: str, key: str) -> list[dict[str, Any]]:
    """What a node's role may do in the bucket: read its environment's objects, add its archives but never
    replace one (a write without ``If-None-Match`` is refused; S3 refuses one over an existing object)."""
    objects = object_arn(partition, bucket, f"{PREFIX}/{key}/*")
    archives = object_arn(partition, bucket, f"{PREFIX}/{key}/archives/*")
    return [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects},
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": archives},
        {"Effect": "Deny", "Action": "s3:PutObject", "Resource": archives,
         "Condition": {"Null": {"s3:if-none-match": "true"}}},
    ]


def archives(s3: Any, bucket: str, key: str) -> list[str]:
    """The archive objects stored for environment ``key``."""
    reply = s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/{key}/archives/")
    return [item["Key"] for item in reply.get("Contents", [])]


def remove_bucket(s3: Any, bucket: str) -> int:
    """Delete the environments bucket and everything in it (the cache is rebuilt on demand); the objects deleted."""
    if not exists(s3, bucket):
        return 0
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            count += len(keys)
    s3.delete_bucket(Bucket=bucket)
    return count
