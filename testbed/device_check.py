"""``dcilab device check NAME``: is this device ready for dcilab?  Read-only: it never edits.

Connects to one inventory device and says what it is (its identity as it reports it), what it
speaks (the NETCONF hello; RFC 6022 schemas, fetched with ``<get-schema>`` where served), which
registered drivers fit it, what the inventory's driver needs that the device lacks, and whether
the data the driver reads validates against the device's own models (libyang).  For a CLI or a
GPU node, the driver's reads are run and their answers shown.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drivers import registry
from drivers.errors import DeviceUnreachable, DriverError, Timeout
from testbed import yang
from testbed.connect import connect, driver_name, target_for
from testbed.inventory import DeviceKind, Inventory

# what the trial reads from each kind of device, in the drivers' words (all read-only)
READS: dict[DeviceKind, tuple[str, ...]] = {
    DeviceKind.OTN_TERMINAL: ("facts", "line_rate_gbps", "supported_rates_gbps", "pm", "protection"),
    DeviceKind.ROADM: ("facts", "degrees", "restoration"),
    DeviceKind.GATEWAY: ("facts", "counters", "shaping_kbps", "pfc_priorities"),
    DeviceKind.GPU_NODE: ("facts",),
}
NETCONF_KINDS = (DeviceKind.OTN_TERMINAL, DeviceKind.ROADM)


@dataclass
class Read:
    name: str
    ok: bool
    value: str                      # the answer, shortened, or the error
    validated: str | None = None    # "valid", libyang's message, or why it was not validated


@dataclass
class DeviceReport:
    name: str
    kind: str
    driver: str
    reachable: bool = False         # a session was opened
    error: str | None = None
    error_kind: str | None = None   # the driver error's class: DeviceUnreachable, Timeout, AuthFailed, ...
    identity: dict[str, Any] = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)        # the hello's: module -> revision
    schemas_listed: int | None = None                             # RFC 6022 /netconf-state/schemas
    schemas_served: list[str] = field(default_factory=list)      # texts fetched with <get-schema>
    schemas_not_served: list[str] = field(default_factory=list)
    drivers_that_fit: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)             # modules the chosen driver reads, absent
    reads: list[Read] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = [f"the {self.driver} driver needs {m}, which the device does not advertise" for m in self.missing]
        out += [f"{r.name}: {r.value}" for r in self.reads if not r.ok]
        out += [f"{r.name}: not valid against the device's models: {r.validated}" for r in self.reads
                if r.ok and r.validated not in (None, "valid") and not r.validated.startswith("not validated")]
        return ([self.error] if self.error else []) + out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems": self.problems}


def _short(value: Any, n: int = 120) -> str:
    s = repr(value) if not isinstance(value, str) else value
    return s if len(s) <= n else s[:n - 3] + "..."


def _modules_needed(kind: str) -> dict[str, set[str]]:
    """Registered driver -> the YANG modules it reads (its ``MODULES``)."""
    return {n: set(getattr(registry.load(kind, n), "MODULES", ())) for n in registry.names(kind)}


def _fetch_schemas(nc: Any, report: DeviceReport, folder: Path) -> list[Path]:
    """Module texts by <get-schema> into ``folder``; the files to load."""
    listed = nc.schemas()
    report.schemas_listed = None if listed is None else len(listed)
    wanted = ([(s.get("identifier", ""), s.get("version", "")) for s in listed] if listed is not None
              else list(report.modules.items()))
    files = []
    for name, version in wanted:
        if not name:
            continue
        try:
            text = nc.get_schema(name, version or None)
        except DriverError:
            report.schemas_not_served.append(f"{name}@{version}" if version else name)
            continue
        f = folder / (f"{name}@{version}.yang" if version else f"{name}.yang")
        f.write_text(text, encoding="utf-8")
        files.append(f)
        report.schemas_served.append(f"{name}@{version}" if version else name)
    return files


def _record(nc: Any, seen: list[tuple[str, Any]]) -> None:
    """Keep every <get>/<get-config> reply the driver reads (for validation)."""
    get, get_config = nc.get, nc.get_config

    def rec_get(subtree: str | None = None):  # type: ignore[no-untyped-def]
        data = get(subtree)
        seen.append(("get", data))
        return data

    def rec_get_config(source: str = "running", subtree: str | None = None):  # type: ignore[no-untyped-def]
        data = get_config(source, subtree)
        seen.append(("getconfig", data))
        return data
    nc.get, nc.get_config = rec_get, rec_get_config


def _run_reads(drv: Any, kind: DeviceKind, report: DeviceReport,
               validate: Callable[[list[tuple[str, Any]]], str | None] | None, seen: list[tuple[str, Any]],
               kwargs: dict[str, dict[str, Any]] | None = None) -> None:
    for name in READS[kind]:
        start = len(seen)
        try:
            value = getattr(drv, name)(**(kwargs or {}).get(name, {}))
        except DriverError as exc:
            report.reads.append(Read(name, False, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a driver that misreads the device: the check says so
            report.reads.append(Read(name, False, f"{type(exc).__name__}: {exc}"))
            continue
        if name == "facts":
            report.identity = {k: v for k, v in (value.to_dict() if hasattr(value, "to_dict") else {}).items()
                               if k != "modules"}
        validated = validate(seen[start:]) if validate is not None else None
        report.reads.append(Read(name, True, _short(value), validated))


def check_device(inv: Inventory, name: str, timeout_s: float = 30.0) -> DeviceReport:
    dev = inv.device(name)
    report = DeviceReport(name, dev.kind.value, driver_name(dev))
    try:
        if dev.kind in NETCONF_KINDS:
            _check_netconf(inv, dev, report, timeout_s)
        else:
            _check_other(inv, dev, report, timeout_s)
    except DriverError as exc:
        report.error, report.error_kind = str(exc), type(exc).__name__
    return report


def _check_other(inv: Inventory, dev: Any, report: DeviceReport, timeout_s: float) -> None:
    report.drivers_that_fit = [report.driver]
    drv = connect(inv, dev.name, timeout_s=timeout_s)
    if dev.kind == DeviceKind.GATEWAY:
        report.notes.append(f"WAN port {drv.wan_port}")
    report.reachable = True
    # a GPU node's facts come from the interpreter its jobs run with (torch, NCCL/gloo)
    kwargs = {"facts": {"python": inv.node_python(dev)}} if dev.kind == DeviceKind.GPU_NODE else None
    with drv:
        _run_reads(drv, dev.kind, report, None, [], kwargs)


def _check_netconf(inv: Inventory, dev: Any, report: DeviceReport, timeout_s: float) -> None:
    from drivers.otn.netconf import NetconfDevice

    kind = dev.kind.value
    with tempfile.TemporaryDirectory(prefix="dcilab-device-check-") as tmp:
        folder = Path(tmp)
        with NetconfDevice(target_for(inv, dev, timeout_s), rpc_timeout_s=timeout_s) as nc:
            report.reachable = True
            report.modules = nc.modules()
            files = _fetch_schemas(nc, report, folder)
        have, needed = set(report.modules), _modules_needed(kind)
        report.drivers_that_fit = [n for n, mods in needed.items() if mods and mods <= have]
        report.missing = sorted(needed.get(report.driver, set()) - have)
        if report.missing:
            report.notes.append("the driver's reads are not tried: it would refuse the device")
            return
        validate = _validator(report, files, folder)
        seen: list[tuple[str, Any]] = []
        with connect(inv, dev.name, timeout_s=timeout_s) as drv:
            _record(drv.nc, seen)
            _run_reads(drv, dev.kind, report, validate, seen)


def _validator(report: DeviceReport, files: list[Path], folder: Path
               ) -> Callable[[list[tuple[str, Any]]], str | None]:
    if yang.yanglint() is None:
        report.notes.append("replies not validated: install libyang2-tools (yanglint)")
        return lambda _replies: "not validated: no yanglint"
    if files:
        dirs = [folder, *yang.search_dirs(*yang.SHIPPED_DIRS)]   # the device's texts first; imports it omits
        report.notes.append(f"replies validated against the device's own models ({len(files)} served)")
    else:
        files = [p for d in yang.search_dirs(*yang.SHIPPED_DIRS) for p in sorted(d.glob("*.yang"))
                 if p.stem.split("@")[0] in report.modules]
        dirs = yang.search_dirs(*yang.SHIPPED_DIRS)
        report.notes.append("the device serves no <get-schema>: replies validated against dcilab's copies "
                            f"of the modules it advertises ({len(files)} found)")

    def check(replies: list[tuple[str, Any]]) -> str | None:
        if not replies:
            return "not validated: no NETCONF read"
        for kind, data in replies:
            try:
                err = yang.validate(yang.data_nodes(data), files, dirs, kind=kind)
            except (OSError, subprocess.SubprocessError) as exc:
                return f"not validated: yanglint failed: {exc}"
            if err is not None:
                return err
        return "valid"
    return check


def render(report: DeviceReport) -> str:
    head = f"{report.name} ({report.kind}, driver {report.driver}): "
    if not report.reachable:
        unreachable = report.error_kind in (DeviceUnreachable.__name__, Timeout.__name__)
        return head + ("NOT REACHABLE: " if unreachable else "COULD NOT CONNECT: ") + str(report.error)
    lines = [head + "reachable"]
    if report.identity:
        ident = ", ".join(f"{k} {v}" for k, v in report.identity.items() if v not in (None, {}, ""))
        lines.append(f"  identity: {ident}")
    if report.modules:
        lines.append(f"  hello: {len(report.modules)} YANG modules")
        served = f"{len(report.schemas_served)} served by <get-schema>"
        if report.schemas_not_served:
            served += f", not served: {', '.join(report.schemas_not_served)}"
        lines.append("  schemas: " + ("none listed (no RFC 6022 netconf-state); " if report.schemas_listed is None
                                      else f"{report.schemas_listed} listed (RFC 6022), ") + served)
    lines.append(f"  drivers that fit: {', '.join(report.drivers_that_fit) or 'none'}")
    if report.missing:
        lines.append(f"  the {report.driver} driver needs, and the device lacks: {', '.join(report.missing)}")
    for r in report.reads:
        val = f"{r.value}" + (f" [{r.validated}]" if r.validated else "")
        lines.append(f"  {r.name}: {'ok' if r.ok else 'FAILED'}: {val}")
    lines += [f"  note: {n}" for n in report.notes]
    if report.error:
        lines.append(f"  error: {report.error}")
    lines.append(f"{len(report.problems)} problem(s)" if report.problems else "ready for dcilab")
    return "\n".join(lines)
