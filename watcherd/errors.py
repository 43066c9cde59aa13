"""Exception types whose class decides what happens to a file.

- ``MediaRejected``: the file itself breaks a rule; it goes to failed/ and is
  never retried.
- ``ApiRejected``: Twelve Labs refused the file (400 ``video_*`` and friends);
  permanent, the file goes to failed/ with the API's code and message.
  ``AssetFailed`` is one: the uploaded asset could not be processed.
- ``TransientError``: the network or the API hiccupped; retry with backoff.
- ``UploadsPaused`` (``AuthError``, ``KeyUnavailable``, ``QuotaError``,
  ``ApiRedirected``): nothing is wrong with the file; every upload waits until
  the account or the configured API address works again.
- ``StorageRefused``: done/ or failed/ refuses the name for good; reported
  once as an ERROR, never retried with a reassuring message.
"""

from __future__ import annotations

import errno


class WatcherdError(Exception):
    """Base of every error watcherd raises on purpose."""


class ConfigError(WatcherdError):
    """The configuration is unusable; ``errors`` lists one line per problem."""

    def __init__(self, errors: list[str], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        super().__init__("\n".join(self.errors))


class MediaRejected(WatcherdError):
    """A file broke a validation rule: permanent, never uploaded."""

    def __init__(self, rule: str, reason: str, measured: object = None) -> None:
        self.rule = rule
        self.reason = reason
        self.measured = measured
        super().__init__(reason)


class FileChanged(WatcherdError):
    """The file changed or vanished under us; it must settle again."""


class ApiError(WatcherdError):
    """An answer from the Twelve Labs API that is not a success."""

    def __init__(self, status: int | None, code: str | None, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(self.describe())

    def describe(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        code = f" {self.code}" if self.code else ""
        return f"{status}{code}: {self.message}"


class ApiRejected(ApiError):
    """A permanent refusal (bad video, bad parameter, unknown index)."""


class AssetFailed(ApiRejected):
    """The uploaded asset ended ``failed`` (multipart path): permanent for this file,
    which goes to failed/ with the API's message (shown, never parsed)."""

    def __init__(self, asset_id: str, message: str,
                 asset: dict[str, object] | None = None) -> None:
        self.asset_id = asset_id
        self.asset = asset  # the asset as the API last showed it, for the sidecar
        super().__init__(None, "asset_failed",
                         f"Twelve Labs could not process asset {asset_id}: {message}")

    def describe(self) -> str:
        return self.message


class TransientError(ApiError):
    """Worth retrying later: connection errors, timeouts, 408, 429, 5xx.

    ``retry_after`` is the server's hint in seconds, when it gave one.
    ``maybe_created`` is True when the request body may have reached the
    server, so a task may exist even though we saw no answer.
    """

    def __init__(
        self,
        status: int | None,
        code: str | None,
        message: str,
        *,
        retry_after: float | None = None,
        maybe_created: bool = False,
    ) -> None:
        self.retry_after = retry_after
        self.maybe_created = maybe_created
        super().__init__(status, code, message)


class EndpointGone(ApiError):
    """404/410 from an endpoint itself (``POST /tasks`` removed upstream), not from what
    it was asked about: no file is at fault, and the files that need it wait."""


class UploadsPaused(ApiError):
    """The account cannot upload right now; pause every upload, fail nothing."""

    fix = "check the Twelve Labs account"


class AuthError(UploadsPaused):
    """401/403: the API key is invalid, expired or lacks access."""

    fix = (
        "put a valid API key in the configured key source (api.key_file, "
        "$CREDENTIALS_DIRECTORY/api-key or $TWELVELABS_API_KEY); watcherd re-reads it "
        "and resumes by itself"
    )


class KeyUnavailable(AuthError):
    """No API key can be read right now (a key file empty or missing mid-rotation).

    Raised where a request would have sent the key, so it takes the same path
    as a refused key: uploads pause and resume once the key source answers.
    """

    def __init__(self, message: str) -> None:
        super().__init__(None, "key_unavailable", message)

    def describe(self) -> str:
        return f"no API key can be read: {self.message}"


class QuotaError(UploadsPaused):
    """``usage_limit_exceeded``: the account has no credit left."""

    fix = "add credit or a payment method to the Twelve Labs account; watcherd resumes by itself"


class StorageRefused(WatcherdError):
    """The filesystem refuses a name or operation for good (ENAMETOOLONG, EINVAL, EILSEQ):
    retrying the same thing cannot succeed, so it is reported once, not retried."""

    def __init__(self, path: str, error: OSError) -> None:
        self.path = path
        self.error = error
        super().__init__(f"{error.strerror or error} ({errno_name(error)})")


def errno_name(error: OSError) -> str:
    return errno.errorcode.get(error.errno or 0, str(error.errno))


class ApiRedirected(UploadsPaused):
    """A 3xx answer: ``api.base_url`` does not point at the API itself.

    Following it would hand the API key (and the video) to whatever host the
    ``Location`` names, so watcherd never does; it is a configuration problem.
    """

    fix = (
        "set api.base_url to the Twelve Labs API's own address (https://api.twelvelabs.io/"
        "v1.3) and reload (SIGHUP); watcherd never follows a redirect with the API key"
    )

    def __init__(self, status: int, message: str, location_host: str | None) -> None:
        self.location_host = location_host
        super().__init__(status, "redirect", message)


class ClaimLost(WatcherdError):
    """Several hosts: another host took this file's claim over while we held it (our
    lease lapsed: a pause, a partition). We stand down before the next side effect and
    leave the file to the new owner."""

    def __init__(self, path: str, step: str, owner: str | None) -> None:
        self.path = path
        self.step = step
        self.owner = owner
        by = f"host {owner}" if owner else "another host"
        super().__init__(f"our claim lapsed and {by} holds it now; {step} is left to it")


class CoordinationUnavailable(WatcherdError):
    """Several hosts: PostgreSQL does not answer. Nothing is claimed (and no side effect
    that needs a claim is done) until it does; no file fails for it."""

    fix = ("check that PostgreSQL runs and that coordination.dsn_file points at it; watcherd "
           "resumes by itself")
