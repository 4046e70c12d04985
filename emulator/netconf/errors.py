"""NETCONF ``rpc-error`` (RFC 6241 section 4.3 and Appendix A)."""

from __future__ import annotations

from lxml import etree

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"


def qn(local: str, ns: str = NC_NS) -> str:
    return f"{{{ns}}}{local}"


class RpcError(Exception):
    """One rpc-error.  ``info`` is a list of (local-name, text) pairs put in ``<error-info>``."""

    def __init__(
        self,
        tag: str,
        message: str = "",
        *,
        type: str = "application",
        severity: str = "error",
        path: str | None = None,
        info: list[tuple[str, str]] | dict | None = None,
        app_tag: str | None = None,
    ):
        super().__init__(f"{type}/{tag}: {message}")
        self.tag = tag
        self.type = type
        self.severity = severity
        self.path = path
        self.message = message
        self.app_tag = app_tag
        if isinstance(info, dict):
            info = list(info.items())
        self.info = list(info or [])

    def to_element(self) -> etree._Element:
        err = etree.Element(qn("rpc-error"), nsmap={None: NC_NS})
        etree.SubElement(err, qn("error-type")).text = self.type
        etree.SubElement(err, qn("error-tag")).text = self.tag
        etree.SubElement(err, qn("error-severity")).text = self.severity
        if self.app_tag:
            etree.SubElement(err, qn("error-app-tag")).text = self.app_tag
        if self.path:
            etree.SubElement(err, qn("error-path")).text = self.path
        if self.message:
            m = etree.SubElement(err, qn("error-message"))
            m.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
            m.text = self.message
        if self.info:
            inf = etree.SubElement(err, qn("error-info"))
            for name, value in self.info:
                etree.SubElement(inf, qn(name)).text = str(value)
        return err


class RpcErrors(Exception):
    """Several rpc-errors in one reply (edit-config with continue-on-error)."""

    def __init__(self, errors: list[RpcError]):
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors
