"""One exception hierarchy for every driver, so a test or a fault can end with a clear reason
(device name, what was asked, what the device said) whatever protocol was underneath."""

from __future__ import annotations

from collections.abc import Iterable


class DriverError(Exception):
    """Base of every driver error; ``device`` names the device (host:port when no name is known)."""

    def __init__(self, message: str, device: str | None = None) -> None:
        self.device = device
        super().__init__(f"{device}: {message}" if device else message)


class DeviceUnreachable(DriverError):
    """No TCP/SSH session could be opened (no route, refused, silent), or the session died."""


class AuthFailed(DriverError):
    """The device refused the login (wrong key, password, user), or a secret could not be read."""


class HostKeyRejected(DriverError):
    """The device's SSH host key is not the one the inventory trusts: nothing was sent to it."""


class EditRejected(DriverError):
    """The device refused an edit or an RPC; ``reason`` is the device's own rpc-error/CLI message."""

    def __init__(self, reason: str, device: str | None = None, tag: str | None = None) -> None:
        self.reason = reason
        self.tag = tag
        super().__init__(f"edit rejected{f' ({tag})' if tag else ''}: {reason}", device)


class CommandRefused(DriverError):
    """The device refused a command that only reads (a CLI ``display``/``show``); ``reason`` is its
    own message.  Not an edit: nothing was changed."""

    def __init__(self, reason: str, device: str | None = None) -> None:
        self.reason = reason
        super().__init__(f"command refused: {reason}", device)


class Unsupported(DriverError):
    """A value or operation the device cannot do; ``supported`` lists what it can."""

    def __init__(self, what: str, requested: object, supported: Iterable[object], device: str | None = None) -> None:
        self.what = what
        self.requested = requested
        self.supported = tuple(supported)
        sup = ", ".join(str(s) for s in self.supported) or "none"
        super().__init__(f"{what} {requested!s} is not supported (supported: {sup})", device)


class Timeout(DriverError):
    """The device did not answer, or an awaited event (notification, state) did not come, in time."""
