"""The errors of an object store, each a kind of an existing runyard error::

    StoreError (mixin: ``except StoreError`` catches every one below)
    ├── StoreUnreachable    RegistryStateError  exit 6  "store_unreachable"
    │                       the endpoint cannot be reached, or kept failing (5xx, timeouts)
    │                       through every retry
    ├── StoreRefused        Refused             exit 4  "store_refused"
    │                       wrong credentials, no permission, a missing bucket; the message
    │                       says which
    ├── StoreMismatch       Refused             exit 4  "store_mismatch"
    │                       an object read back from the store differs in size or SHA-256
    ├── StoreObjectMissing  NotFound            exit 3  "store_object_missing"
    │                       no object under a key that should hold one
    └── StoreClientMissing  Refused             exit 4  "store_client_missing"
                            a store is configured but boto3 is not installed

Messages name the bucket, the key or the endpoint; they never hold a credential.
"""

from __future__ import annotations

from runyard.errors import NotFound, Refused, RegistryStateError, RunyardError

CREDENTIALS_HINT = (
    "runyard takes credentials from the standard AWS chain only: AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE and the ~/.aws files"
)


class StoreError(RunyardError):
    """Base of the store's errors; defines no code of its own (each subclass takes its
    exit code and code from the runyard error it is listed under)."""


class StoreUnreachable(StoreError, RegistryStateError):
    code = "store_unreachable"


class StoreRefused(StoreError, Refused):
    code = "store_refused"


class StoreMismatch(StoreError, Refused):
    code = "store_mismatch"


class StoreObjectMissing(StoreError, NotFound):
    code = "store_object_missing"


class StoreClientMissing(StoreError, Refused):
    code = "store_client_missing"
