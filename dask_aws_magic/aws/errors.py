"""AWS errors turned into one paragraph a user can act on."""

from __future__ import annotations

from ..core.errors import AwsError

FIXES = {
    "AuthFailure": "The AWS credentials were rejected: check them with `aws sts get-caller-identity`.",
    "UnauthorizedOperation": "Your AWS identity lacks a permission this needs; ask for it to be granted "
                             "(the message names the action).",
    "AccessDenied": "Your AWS identity lacks a permission this needs; ask for it to be granted.",
    "InvalidAMIID.NotFound": "The AMI does not exist in this region: fix `instance.ami` (or remove it to use "
                             "the default image).",
    "InvalidAMIID.Malformed": "Fix `instance.ami`: an AMI id looks like ami-0123456789abcdef0.",
    "InstanceLimitExceeded": "Your account's instance limit is reached: stop other instances, use fewer "
                             "workers, or request a higher limit in the Service Quotas console.",
    "VcpuLimitExceeded": "Your account's vCPU limit is reached: use fewer or smaller workers, or request a "
                         "higher limit in the Service Quotas console.",
    "InsufficientInstanceCapacity": "AWS has no capacity for this instance type in the zones tried: try "
                                    "another `instance.type`, region, or later.",
    "RequestLimitExceeded": "AWS is throttling this account's API calls: wait a minute and try again.",
    "InvalidKeyPair.NotFound": "The key pair in `instance.key_name` does not exist in this region.",
    "InvalidSubnetID.NotFound": "The subnet in `instance.subnet_id` does not exist in this region.",
    "InvalidParameterValue": "A profile value was rejected by AWS: check the field named in the message.",
    "Unsupported": "This instance type is not offered here: pick another `instance.type` or region.",
}


def explain(exc: BaseException, doing: str) -> AwsError:
    """One paragraph naming what failed, AWS's own words, and the fix."""
    import botocore.exceptions

    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return AwsError(
            f"No AWS credentials were found while {doing}. Configure them (`aws configure`, or the "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables), or name a credentials profile with "
            "`aws_profile:` in the cluster profile. To try without AWS, run `%dask_cluster sandbox start`."
        )
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return AwsError(f"No AWS region is set while {doing}: add `region: us-east-1` (say) to the profile.")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return AwsError(f"AWS could not be reached while {doing} ({exc}). Check the network and the region.")
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", "")
        fix = FIXES.get(code, "")
        if not fix and code.endswith(".NotFound"):
            fix = "Something the profile names does not exist in this region."
        return AwsError(f"AWS refused while {doing}: {code}: {message} {fix}".strip())
    return AwsError(f"AWS failed while {doing}: {type(exc).__name__}: {exc}")


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a boto3 ClientError, else None."""
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None
