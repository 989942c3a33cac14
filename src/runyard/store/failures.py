"""botocore's exceptions turned into the store's errors, with messages that say which.

S3 answers a refusal with a code (``InvalidAccessKeyId``, ``AccessDenied``,
``NoSuchBucket`` ...) in the body, except for HEAD requests, which have no body and
carry only the HTTP status; both are handled. A credential never reaches a message:
botocore's own messages hold none, and the access key id is never repeated.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from runyard.store.errors import (
    CREDENTIALS_HINT,
    StoreError,
    StoreObjectMissing,
    StoreRefused,
    StoreUnreachable,
)

CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
    }
)
# The bucket lives in another region than the one signed for (botocore follows most
# such redirects itself; these are the ones it leaves).
REGION_CODES = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)
DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "Forbidden", "403"})
MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# Answers that mean "the store is in trouble", not "the store says no".
TROUBLE_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "503", "500"}
)


def error_code(exc: ClientError) -> str:
    """The S3 error code of ``exc`` (the HTTP status as text for bodiless HEAD answers)."""
    return str(exc.response.get("Error", {}).get("Code") or http_status(exc) or "unknown")


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def store_error(
    exc: BaseException, *, action: str, location: str, bucket: str, endpoint: str
) -> StoreError:
    """The store error for ``exc``, raised while trying to ``action`` (``write``, ``read``,
    ``delete``, ``list``) ``location`` (``s3://bucket/key``) at ``endpoint``.

    Raises ``exc`` itself again when it is a programming error (bad parameters), which
    no message to the user could explain.
    """
    if isinstance(exc, ClientError):
        return _client_error(exc, action=action, location=location, bucket=bucket)
    if isinstance(exc, ParamValidationError):
        raise exc
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StoreRefused(f"no AWS credentials to {action} {location}", hint=CREDENTIALS_HINT)
    if isinstance(exc, ProfileNotFound | CredentialRetrievalError):
        # Their messages name the profile, never a secret.
        return StoreRefused(f"the AWS credentials cannot be read: {exc}", hint=CREDENTIALS_HINT)
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return StoreUnreachable(
            f"cannot reach the archive store at {endpoint} to {action} {location}: {exc}",
            hint="check [archive] endpoint_url, and that the store is up",
        )
    if isinstance(exc, BotoCoreError):
        # A broken response stream and the like: the store (or the way to it) failed.
        return StoreUnreachable(
            f"the archive store at {endpoint} failed to {action} {location}: {exc}"
        )
    return StoreUnreachable(
        f"the connection to the archive store at {endpoint} broke while trying to "
        f"{action} {location}: {type(exc).__name__}: {exc}"
    )


def _client_error(exc: ClientError, *, action: str, location: str, bucket: str) -> StoreError:
    code = error_code(exc)
    status = http_status(exc)
    if code in CREDENTIAL_CODES:
        return StoreRefused(
            f"the credentials were refused ({code}) when trying to {action} {location}",
            hint=CREDENTIALS_HINT,
        )
    if code in REGION_CODES or status == 301:
        return StoreRefused(
            f"bucket {bucket!r} is in another region than the one requests were signed for "
            f"({code}: {_message(exc)})",
            hint="set [archive] region (or AWS_REGION) to the bucket's region",
        )
    if code == "NoSuchBucket":
        return StoreRefused(
            f"bucket {bucket!r} does not exist",
            hint="create it, or correct [archive] store (runyard never creates buckets)",
        )
    if code in DENIED_CODES or status == 403:
        maybe_missing = (
            # A listing refused is also what a bucket these credentials cannot see gives.
            ", or the bucket does not exist and they may not see that" if action == "list" else ""
        )
        return StoreRefused(
            f"no {action} permission on {location} ({code})",
            hint=f"the credentials in use may not {action} there{maybe_missing}; "
            + CREDENTIALS_HINT,
        )
    # Before the 404s: its status is 404 too.
    if code == "NoSuchUpload":
        return StoreRefused(
            f"the multipart upload of {location} no longer exists (it was aborted, perhaps "
            "by `runyard recover` or a lifecycle rule)"
        )
    if code in MISSING_OBJECT_CODES or status == 404:
        return StoreObjectMissing(f"no object {location} in the archive store")
    if code in TROUBLE_CODES or status >= 500:
        return StoreUnreachable(
            f"the archive store kept failing to {action} {location} through every retry "
            f"({code}: {_message(exc)})"
        )
    return StoreRefused(
        f"the archive store refused to {action} {location} ({code}: {_message(exc)})"
    )


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message") or "no message")
