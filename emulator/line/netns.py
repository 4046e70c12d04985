"""Open a TAP device inside a named network namespace without leaving the host namespace.

The line process must sit in the host namespace and own one TAP in each site's gateway
namespace. A TAP belongs to the namespace that was current when /dev/net/tun was opened, so
we briefly switch the calling thread into the target namespace (``setns``; Python 3.11 has
no ``os.setns``, hence ctypes), create and configure the device there, and switch back.

The TAP is not persistent: it disappears when the last fd on it is closed, so when the line
process (and its forwarding children) exits, the interfaces go with it. That is the cleanup
guarantee; nothing needs deleting afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_UP = 0x1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFMTU = 0x8922
NETNS_RUN_DIR = "/var/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(OSError):
    """A namespace or TAP could not be set up; the message says which and why."""


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(err, f"setns into {what} failed: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with the calling thread in netns ``name`` (from /var/run/netns)."""
    path = os.path.join(NETNS_RUN_DIR, name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsError(errno.ENOENT, f"network namespace {name!r} does not exist ({path})") from None
    except OSError as exc:
        raise NetnsError(exc.errno, f"cannot open network namespace {name!r}: {exc.strerror}") from None
    try:
        # thread-self: setns only moves the calling thread, so remember that thread's netns.
        orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, f"netns {name!r}")
            try:
                yield
            finally:
                _setns(orig, "the original netns")
        finally:
            os.close(orig)
    finally:
        os.close(target)


def open_tap(netns: str, ifname: str, mtu: int) -> int:
    """Create TAP ``ifname`` in ``netns``, set its MTU, bring it up; return its nonblocking fd.

    Frames are plain Ethernet (IFF_NO_PI). The fd is close-on-exec so helper programs never
    keep the interface alive, but it is inherited across fork by the forwarding children.
    """
    with in_netns(netns):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            ifr = struct.pack("16sH22x", ifname.encode(), IFF_TAP | IFF_NO_PI)
            try:
                fcntl.ioctl(fd, TUNSETIFF, ifr)
            except OSError as exc:
                hint = {errno.EBUSY: " (a TAP of that name is already held by another process)",
                        errno.EINVAL: " (an interface of that name exists and is not a TAP)",
                        errno.EPERM: " (needs CAP_NET_ADMIN)"}.get(exc.errno or 0, "")
                raise NetnsError(exc.errno, f"cannot create TAP {ifname!r} in netns {netns!r}: "
                                            f"{exc.strerror}{hint}") from None
            # A socket created here lives in this netns, so its ioctls reach the new TAP.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                name = ifname.encode()
                try:
                    fcntl.ioctl(s, SIOCSIFMTU, struct.pack("16si20x", name, mtu))
                except OSError as exc:
                    raise NetnsError(exc.errno, f"cannot set MTU {mtu} on {ifname!r} in netns "
                                                f"{netns!r}: {exc.strerror}") from None
                flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH22x", name, 0)))[1]
                fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", name, flags | IFF_UP))
        except BaseException:
            os.close(fd)
            raise
    return fd
