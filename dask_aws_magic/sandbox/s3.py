"""S3 as strict as AWS where software sync relies on it: ``x-amz-expected-bucket-owner`` (a request for a
bucket of another account is refused: a bucket name squatted by someone else is never used). The
``s3:if-none-match`` condition key is the IAM evaluator's (:mod:`.policies`)."""

from __future__ import annotations

from typing import Any

from ._patch import Patches


def patch_expected_owner(patches: Patches) -> None:
    """Refuse a request whose ``x-amz-expected-bucket-owner`` is not the bucket's account, as S3 does."""
    from moto.s3.exceptions import BucketAccessDeniedError
    from moto.s3.models import s3_backends
    from moto.s3.responses import S3Response

    def guarded(original: Any) -> Any:
        def response(self: Any, request: Any, full_url: str) -> Any:
            expected = {k.lower(): v for k, v in dict(request.headers).items()}.get("x-amz-expected-bucket-owner")
            if expected:
                bucket = self.parse_bucket_name_from_url(request, full_url)
                owner = s3_backends.bucket_accounts.get(bucket)
                if owner is not None and owner[1] != expected:
                    raise BucketAccessDeniedError(bucket)
            return original(self, request, full_url)
        return response

    for name in ("_key_response", "_bucket_response"):
        patches.set(S3Response, name, guarded(getattr(S3Response, name)))
