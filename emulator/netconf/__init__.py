"""Emulated NETCONF over SSH (RFC 6241/6242, RFC 5277 notifications) on paramiko."""

from .datastore import Datastore, Editor, subtree_filter
from .errors import NC_NS, RpcError, RpcErrors
from .framing import BASE_10, BASE_11, Framer, FramingError
from .server import NOTIF_NS, NetconfServer, Session

__all__ = [
    "BASE_10",
    "BASE_11",
    "NC_NS",
    "NOTIF_NS",
    "Datastore",
    "Editor",
    "Framer",
    "FramingError",
    "NetconfServer",
    "RpcError",
    "RpcErrors",
    "Session",
    "subtree_filter",
]
