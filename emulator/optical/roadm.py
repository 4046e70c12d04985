"""ROADM, OpenROADM personality, with the test bench's back door.

Degrees: every fiber path is its own fiber, so each path span this ROADM terminates is its own
degree: on a path ``[r0, r1, ..., rn]`` ROADM ``ri`` has a degree toward ``r(i-1)`` (i > 0) and
one toward ``r(i+1)`` (i < n); degrees are numbered 1.. in path order, then direction (A side
first).  Cutting a degree cuts its path's fiber only (``set_path_up(path, False)``), never another
path that crosses the same ROADMs.

Paths:
* ``/org-openroadm-device/info``: the identity, as on the OpenROADM terminal (:mod:`.openroadm`).
* ``/org-openroadm-device/degree[degree-number]`` (``http://org/openroadm/device``) with
  read-only ``max-wavelengths`` (as ``info/max-degrees``: config false in the model); read-only ``fiber`` (``urn:dcilab:emulator:bench``: path, neighbor,
  span-length-km, los).
* ``/org-openroadm-device/circuit-packs[k/0]``: one line card per degree, port ``L1``, which the
  OTS interface names as its supporting circuit pack and port (see :func:`.openroadm.hardware_config`).
* ``/org-openroadm-device/interface[name]``: ``OTS-DEGk-TTP-TXRX`` (opticalTransport) and
  ``OMS-DEGk-TTP-TXRX`` (openROADMOpticalMultiplex) per degree; read-only operational-state.
* ``/current-pm-list``: opticalPowerInput / opticalPowerOutput (dBm, 2 digits) and
  span loss (type vendorExtension, extension ``fiberSpanLoss``) per OTS interface.  Model: launch 1 dBm per channel, span length = path
  length / number of spans of the path, 0.22 dB/km; a cut (LOS) reads -40.00 dBm.
* ``/optical-control-plane`` (bench namespace, read-only): the line's protection/restoration
  engine: mode, active-path, route (ROADMs of the active path), restoration-state, request-state,
  last-switch, and per path up/ber.
* RPC ``pm-interact`` (bench namespace), like TransportPCE's simulator back door::

      <pm-interact xmlns="urn:dcilab:emulator:bench">
        <rpc-action>set|clear</rpc-action>
        <degree-number>1</degree-number>     <!-- or <interface>OTS-DEG1-TTP-TXRX</interface>: LOS -->
        <!-- or: <path>working</path><ber>0.000000010000000000</ber> (post-FEC BER; clear = 0) -->
      </pm-interact>

  reply ``<status>Successful</status>`` and ``<path>``.
* Notifications (bench namespace): ``restoration-event`` (kind restoration: from, to, route,
  restoration-state, outage-ms), ``fiber-event`` (path-down/path-up of a path this ROADM carries)
  and ``protection-switch-event`` (switch).
"""

from __future__ import annotations

from lxml import etree

from emulator.netconf import RpcError
from emulator.netconf.errors import NC_NS

from .device import BENCH_MODULE, BENCH_NS, Device, invalid, local, sub, text
from .openconfig import _child, _entries
from .openroadm import (HW_SCHEMA, HW_STATE, INFO_STATE, OPENROADM_REVISION, Pack, check_supporting, hardware_config,
                        hardware_state, openroadm_info)
from .pm import dec
from .terminal import dec_check, enum_check, uint_check

DEV = "http://org/openroadm/device"
IFT = "http://org/openroadm/interfaces"
PM = "http://org/openroadm/pm"
MAX_WAVELENGTHS = 96


class Roadm(Device):
    NAMESPACES = (DEV, PM)
    MODULES = (("org-openroadm-device", DEV, OPENROADM_REVISION), ("org-openroadm-interfaces", IFT, "2022-09-30"),
               ("org-openroadm-pm", PM, OPENROADM_REVISION), BENCH_MODULE)
    READ_ONLY = ("operational-state", "current-pm-list", "fiber", "optical-control-plane", "max-degrees",
                 "max-wavelengths") + INFO_STATE + HW_STATE
    MODEL = "DCILAB-ROADM-CDC"
    SCHEMA = {
        f"{{{DEV}}}degree": ("degree-number",),
        f"{{{PM}}}current-pm-entry": ("pm-resource-type", "pm-resource-type-extension", "pm-resource-instance"),
        f"{{{PM}}}current-pm": ("type", "extension", "location", "direction"),
        f"{{{PM}}}measurement": ("granularity",), **HW_SCHEMA,
    }

    def __init__(self, cfg, line=None):
        self.degrees = []  # (number, path, neighbor, span_km)
        for p in cfg.paths:
            if cfg.name not in p.roadms:
                continue
            i = p.roadms.index(cfg.name)
            spans = max(1, len(p.roadms) - 1)
            span_km = p.length_km / spans
            for j in (i - 1, i + 1):
                if 0 <= j < len(p.roadms):
                    self.degrees.append((len(self.degrees) + 1, p.name, p.roadms[j], span_km))
        if not self.degrees:  # a ROADM at a path's only node: one line degree
            for p in cfg.paths:
                if cfg.name in p.roadms:
                    self.degrees.append((len(self.degrees) + 1, p.name, None, p.length_km))
        self.my_paths = {d[1] for d in self.degrees}
        super().__init__(cfg, line)

    def packs(self) -> list[Pack]:
        """One line card per degree (slot n, line port L1)."""
        return [(f"{n}/0", str(n), "LINE", ("L1",)) for n, *_ in self.degrees]

    def register(self) -> None:
        self.server.register_rpc(f"{{{BENCH_NS}}}pm-interact", self._rpc_pm_interact)

    def initial_config(self) -> str:
        parts = [f"<info><node-id>{self.cfg.name}</node-id><node-type>rdm</node-type></info>", hardware_config(self.packs())]
        for n, _p, _nb, _km in self.degrees:
            parts.append(f"<degree><degree-number>{n}</degree-number></degree>")
        for n, _p, _nb, _km in self.degrees:
            parts.append(
                f"<interface><name>OTS-DEG{n}-TTP-TXRX</name>"
                f"<type xmlns:openROADM-if='{IFT}'>openROADM-if:opticalTransport</type>"
                f"<administrative-state>inService</administrative-state>"
                f"<supporting-circuit-pack-name>{n}/0</supporting-circuit-pack-name><supporting-port>L1</supporting-port>"
                f"</interface><interface><name>OMS-DEG{n}-TTP-TXRX</name>"
                f"<type xmlns:openROADM-if='{IFT}'>openROADM-if:openROADMOpticalMultiplex</type>"
                f"<administrative-state>inService</administrative-state>"
                f"<supporting-interface-list>OTS-DEG{n}-TTP-TXRX</supporting-interface-list></interface>")
        return f"<data xmlns='{NC_NS}'><org-openroadm-device xmlns='{DEV}'>{''.join(parts)}</org-openroadm-device></data>"

    def validate(self, tree) -> None:
        dev = next((c for c in tree if isinstance(c.tag, str) and c.tag == f"{{{DEV}}}org-openroadm-device"), None)
        if dev is None:
            raise invalid("org-openroadm-device cannot be removed", element="org-openroadm-device",
                          tag="operation-not-supported")
        nums = set()
        for d in _entries(dev, "degree"):
            n = uint_check(text(_child(d, "degree-number")), "degree-number", 1, 99)
            if n > len(self.degrees):
                raise invalid(f"degree {n} does not exist (1..{len(self.degrees)})", element="degree-number")
            nums.add(n)
            mw = _child(d, "max-wavelengths")
            if mw is not None:
                uint_check(text(mw), "max-wavelengths", 1, 96)
        if nums != {d[0] for d in self.degrees}:
            raise invalid("degrees are hardware and cannot be removed", element="degree", tag="operation-not-supported")
        names = set()
        for i in _entries(dev, "interface"):
            names.add(text(_child(i, "name")))
            adm = _child(i, "administrative-state")
            if adm is not None:
                enum_check(text(adm), ("inService", "outOfService", "maintenance"), "administrative-state")
        check_supporting(dev)
        for n, *_ in self.degrees:
            for kind in ("OTS", "OMS"):
                if f"{kind}-DEG{n}-TTP-TXRX" not in names:
                    raise invalid(f"interface {kind}-DEG{n}-TTP-TXRX cannot be removed", element="interface",
                                  tag="operation-not-supported")

    # --- pm-interact --------------------------------------------------------------------------------
    def _rpc_pm_interact(self, session, op):
        p = {}
        for c in op:
            if isinstance(c.tag, str):
                if local(c) not in ("rpc-action", "degree-number", "interface", "path", "ber"):
                    raise RpcError("unknown-element", f"unexpected <{local(c)}> in <pm-interact>", type="protocol",
                                   info=[("bad-element", local(c))])
                p[local(c)] = text(c)
        action = p.get("rpc-action")
        if action is None:
            raise RpcError("missing-element", "<rpc-action> is required", type="protocol",
                           info=[("bad-element", "rpc-action")])
        enum_check(action, ("set", "clear"), "rpc-action")
        degree = None
        if "interface" in p:
            for n, *_ in self.degrees:
                if p["interface"] in (f"OTS-DEG{n}-TTP-TXRX", f"OMS-DEG{n}-TTP-TXRX"):
                    degree = n
            if degree is None:
                raise invalid(f"no interface {p['interface']!r} on {self.cfg.name}", element="interface")
        if "degree-number" in p:
            degree = uint_check(p["degree-number"], "degree-number", 1, len(self.degrees))
        if degree is not None:
            if "ber" in p or "path" in p:
                raise invalid("give either a degree (LOS) or a path and ber, not both", element="degree-number")
            path = self.degrees[degree - 1][1]
            self.call("set_path_up", path=path, up=action == "clear")
        elif "path" in p:
            path = p["path"]
            if path not in self.my_paths:
                raise invalid(f"path {path!r} does not cross {self.cfg.name} (paths: {', '.join(sorted(self.my_paths))})",
                              element="path")
            if action == "set":
                if "ber" not in p:
                    raise RpcError("missing-element", "<ber> is required to set a BER", type="protocol",
                                   info=[("bad-element", "ber")])
                ber = dec_check(p["ber"], 18, "ber", 0, 1)
            else:
                ber = 0.0
            self.call("set_ber", path=path, ber=ber)
        else:
            raise RpcError("missing-element", "give <degree-number>/<interface> (LOS) or <path> (BER)",
                           type="protocol", info=[("bad-element", "degree-number")])
        st = etree.Element(f"{{{BENCH_NS}}}status", nsmap={None: BENCH_NS})
        st.text = "Successful"
        pe = etree.Element(f"{{{BENCH_NS}}}path", nsmap={None: BENCH_NS})
        pe.text = path
        return [st, pe]

    # --- state ---------------------------------------------------------------------------------------
    def state(self, st):
        data = etree.Element(f"{{{NC_NS}}}data", nsmap={None: NC_NS})
        dev = sub(data, "org-openroadm-device", ns=DEV)
        openroadm_info(dev, self.cfg.name, self.MODEL)
        sub(dev.find(f"{{{DEV}}}info"), "max-degrees", len(self.degrees))   # config false: state only
        hardware_state(dev, self.packs(), self.cfg.name, self.MODEL)
        paths = {p["name"]: p for p in (st or {}).get("paths", [])}
        for n, pname, nb, km in self.degrees:
            d = sub(dev, "degree")
            sub(d, "degree-number", n)
            sub(d, "max-wavelengths", MAX_WAVELENGTHS)   # config false and mandatory
            f = sub(d, "fiber", ns=BENCH_NS)
            sub(f, "path", pname)
            if nb:
                sub(f, "neighbor", nb)
            sub(f, "span-length-km", dec(km, 3))
            sub(f, "los", "false" if paths.get(pname, {}).get("up", True) else "true")
        for n, pname, _nb, _km in self.degrees:
            up = bool(paths.get(pname, {}).get("up", st is not None))
            for kind in ("OTS", "OMS"):
                i = sub(dev, "interface")
                sub(i, "name", f"{kind}-DEG{n}-TTP-TXRX")
                sub(i, "operational-state", "inService" if up else "outOfService")
        if st:
            lst = sub(data, "current-pm-list", ns=PM, nsmap={"d": DEV})
            from .openroadm import OpenRoadmTerminal
            for n, pname, _nb, km in self.degrees:
                up = paths.get(pname, {}).get("up", True)
                loss = 0.22 * km
                pin = 1.0 - loss if up else -40.0
                OpenRoadmTerminal._pm_entry(lst, f"OTS-DEG{n}-TTP-TXRX", [
                    ("opticalPowerInput", dec(pin, 2), "dBm"), ("opticalPowerOutput", dec(1.0, 2), "dBm"),
                    (("vendorExtension", "fiberSpanLoss"), dec(loss, 2), "dB")], self._start_ns)
            ocp = sub(data, "optical-control-plane", ns=BENCH_NS)
            pr = st.get("protection") or {}
            active = st.get("active_path")
            sub(ocp, "mode", pr.get("mode", "none"))
            sub(ocp, "active-path", active)
            route = sub(ocp, "route")
            for r in next((p.roadms for p in self.cfg.paths if p.name == active), ()):
                sub(route, "roadm", r)
            sub(ocp, "restoration-state", pr.get("restoration_state", "idle"))
            sub(ocp, "request-state", pr.get("request_state", "none"))
            sub(ocp, "ason", "true" if pr.get("ason") else "false")
            if pr.get("restoration_ms") is not None:
                sub(ocp, "restoration-time-ms", dec(float(pr["restoration_ms"]), 3))
            ls = pr.get("last_switch")
            if isinstance(ls, dict):
                e = sub(ocp, "last-switch")
                for k in ("kind", "from", "to", "cause"):
                    if ls.get(k) is not None:
                        sub(e, k, ls[k])
                if ls.get("outage_ms") is not None:
                    sub(e, "outage-ms", dec(float(ls["outage_ms"]), 3))
            for pname, p in paths.items():
                e = sub(ocp, "path")
                sub(e, "name", pname)
                sub(e, "up", "true" if p.get("up") else "false")
                sub(e, "ber", dec(float(p.get("ber", 0.0)), 18))
                sub(e, "length-km", dec(float(p.get("length_km", 0.0)), 3))
        return data

    _start_ns = 0

    def start(self):
        import time
        self._start_ns = time.time_ns()
        return super().start()

    # --- events -> notifications ------------------------------------------------------------------------
    def on_event(self, ev: dict) -> None:
        kind = ev.get("kind")
        if kind == "restoration":
            el = etree.Element(f"{{{BENCH_NS}}}restoration-event", nsmap={None: BENCH_NS})
            for k in ("from", "to", "cause"):
                if ev.get(k) is not None:
                    sub(el, k, ev[k])
            route = sub(el, "route")
            for r in next((p.roadms for p in self.cfg.paths if p.name == ev.get("to")), ()):
                sub(route, "roadm", r)
            sub(el, "restoration-state", ev.get("state", "restored"))
        elif kind in ("path-down", "path-up"):
            path = ev.get("from") or ev.get("path") or ev.get("to")
            if path not in self.my_paths:
                return
            el = etree.Element(f"{{{BENCH_NS}}}fiber-event", nsmap={None: BENCH_NS})
            sub(el, "path", path)
            sub(el, "event", "los" if kind == "path-down" else "los-cleared")
            for n, pname, *_ in self.degrees:
                if pname == path:
                    sub(el, "degree-number", n)
        elif kind == "switch":
            el = etree.Element(f"{{{BENCH_NS}}}protection-switch-event", nsmap={None: BENCH_NS})
            for k in ("from", "to", "cause"):
                if ev.get(k) is not None:
                    sub(el, k, ev[k])
        else:
            return
        if ev.get("outage_ms") is not None:
            sub(el, "outage-ms", dec(float(ev["outage_ms"]), 3))
        self.notify(el)
