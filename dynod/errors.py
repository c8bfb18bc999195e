"""The one exception tree of dynod.

::

    DynodError                     base of everything dynod raises on purpose
    ├── UserInputError             bad input from a user: names, keys, archives, ...
    │   ├── InvalidName            an app name, process type or dyno name
    │   ├── InvalidConfig          a config var key or value, or the config as a whole
    │   ├── InvalidFormation       a quantity, size or formation string
    │   ├── InvalidProcfile        a Procfile that cannot be parsed
    │   ├── InvalidArchive         a source tarball that is unsafe or unreadable
    │   ├── InvalidDomain          a host name that cannot be a custom domain
    │   └── InvalidCertificate     a certificate chain or key that cannot be served
    ├── NotFound                   an app, release, build or dyno that does not exist
    ├── Conflict                   the request clashes with the current state
    ├── BuildFailed                a buildpack failed, timed out or produced no slug
    ├── RuntimeFailure             the kernel refused something a dyno needed
    │   └── CgroupError            a cgroup could not be made, limited or removed
    ├── FirewallError              iptables-restore rejected the rules
    ├── DrainFailed                a log drain's receiver refused or was unreachable
    └── AcmeFailed                 the ACME server refused or failed a certificate order

Every message is a full sentence that names the offending value and says what to
do.  The API maps each class to an HTTP status and an ``id`` (``status`` and
``error_id`` below); the CLI prints the message and exits 1.
"""

from __future__ import annotations


class DynodError(Exception):
    """Base of every error dynod raises on purpose."""

    status = 500
    error_id = "internal_error"


class UserInputError(DynodError):
    status = 422
    error_id = "invalid_params"


class InvalidName(UserInputError):
    pass


class InvalidConfig(UserInputError):
    pass


class InvalidFormation(UserInputError):
    pass


class InvalidProcfile(UserInputError):
    pass


class InvalidArchive(UserInputError):
    pass


class NotFound(DynodError):
    status = 404
    error_id = "not_found"


class Conflict(DynodError):
    status = 409
    error_id = "conflict"


class BuildFailed(DynodError):
    status = 422
    error_id = "build_failed"


class RuntimeFailure(DynodError):
    error_id = "runtime_failure"


class CgroupError(RuntimeFailure):
    pass


class FirewallError(DynodError):
    error_id = "firewall_failure"


class InvalidDomain(UserInputError):
    pass


class InvalidCertificate(UserInputError):
    pass


class AcmeFailed(DynodError):
    status = 502
    error_id = "acme_failed"


class DrainFailed(DynodError):
    """A batch did not reach a drain.  ``retry`` says whether sending it again may help;
    ``certificate`` carries the verification error when TLS refused the receiver."""

    error_id = "drain_failed"

    def __init__(
        self, message: str, *, retry: bool = True, certificate: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.certificate = certificate
