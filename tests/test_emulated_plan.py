"""The inventory -> lab plan translation (no root needed)."""

from __future__ import annotations

import ipaddress

from emulator.lab.build import line_config
from emulator.lab.plan import LabPlan, clashes
from testbed.emulated_lab import lab_plan
from testbed.inventory import load_inventory

BENCH = ipaddress.ip_network("198.18.0.0/15")


def plan(path: str = "inventory/emulated.yaml") -> LabPlan:
    return lab_plan(load_inventory(path))


def test_every_address_of_the_plan_is_in_the_benchmarking_range() -> None:
    p = plan()
    addrs = [p.controller_address, p.line.a_address, p.line.z_address]
    addrs += [n.mgmt_address for n in p.nodes] + [n.data_address for n in p.nodes if n.data_address]
    for a in addrs:
        assert ipaddress.ip_interface(a).ip in BENCH, a
    for f in p.fabrics:
        assert ipaddress.ip_network(f.subnet).subnet_of(BENCH)


def test_line_rate_is_the_service_rate_times_the_bandwidth_scale() -> None:
    p = plan()
    assert p.line.rate_bps == 800e9 * 0.00125
    assert [x.name for x in p.line.paths] == ["working", "protection", "restoration"]
    assert p.line.active_path == "working"
    cfg = line_config(p)
    assert [e["netns"] for e in cfg["ends"]] == ["dcl-dc-a-gw", "dcl-dc-b-gw"]
    assert cfg["paths"][0]["length_km"] == 329


def test_the_line_gets_the_inventorys_transport_model_at_the_real_scale() -> None:
    from emulator.line.model import LineConfig
    cfg = LineConfig.from_dict({**line_config(plan()), "control_socket": "/run/dcilab/x/line.sock"})
    tc = cfg.transport
    assert tc is not None and tc.enabled and (tc.timeout, tc.retry_cnt, tc.mtu) == (20, 7, 4096)
    assert tc.scale == 0.00125 and tc.real_rate_bps(cfg.rate_bps) == 800e9   # the line knows the real rate
    inv = load_inventory("inventory/emulated.yaml")
    off = inv.model_copy(update={"emulation": inv.emulation.model_copy(  # type: ignore[union-attr]
        update={"transport": inv.emulation.transport.model_copy(update={"model": "none"})})})  # type: ignore[union-attr]
    assert LineConfig.from_dict({**line_config(lab_plan(off)), "control_socket": "/x/l.sock"}).transport.enabled is False  # type: ignore[union-attr]


def test_gpu_nodes_reach_the_other_site_through_their_own_gateway() -> None:
    p = plan()
    by_site = {f.site: f for f in p.fabrics}
    assert by_site["dc-a"].gateway == "dc-a-gw" and by_site["dc-a"].gateway_ip == "198.18.1.1"
    assert by_site["dc-b"].gateway == "dc-b-gw" and by_site["dc-b"].gateway_ip == "198.18.2.1"


def test_link_names_fit_the_kernel_limit_and_are_unique() -> None:
    p = plan()
    names = [p.host_link(n.index) for n in p.nodes] + [p.mgmt_bridge]
    assert len(set(names)) == len(names)
    assert all(len(n) <= 15 for n in names)
    longest = p.__class__(**{**p.__dict__, "prefix": "abcdef"})   # the longest prefix the inventory takes
    assert all(len(n) <= 15 for n in [longest.host_link(99), longest.mgmt_bridge])


def test_the_second_lab_differs_from_the_first_only_in_what_two_labs_cannot_share() -> None:
    """inventory/emulated-2.yaml is emulated.yaml with its own name, prefix, state, addresses and
    host-wide ports: nothing else may drift between them."""
    one, two = (load_inventory(f"inventory/{f}").model_dump(mode="json") for f in ("emulated.yaml", "emulated-2.yaml"))
    moved = {"198.18.0.": "198.18.16.", "198.18.1.": "198.18.17.", "198.18.2.": "198.18.18.", "198.18.3.": "198.18.19.",
             "/run/dcilab/emulated-dci/": "/run/dcilab/emulated-dci-2/", "127.0.0.1:8428": "127.0.0.1:8429"}

    def moved_text(v):  # type: ignore[no-untyped-def]
        if isinstance(v, dict):
            return {k: moved_text(x) for k, x in v.items()}
        if isinstance(v, list):
            return [moved_text(x) for x in v]
        if isinstance(v, str):
            for a, b in moved.items():
                v = v.replace(a, b)
        return v
    expected = moved_text(one)
    expected["name"] = "emulated-dci-2"
    expected["description"] = two["description"] = None
    expected["emulation"].update(prefix="dc2", slurm_port=6827, state_dir="/run/dcilab/emulated-dci-2")
    assert two == expected
    a, b = plan(), plan("inventory/emulated-2.yaml")
    assert clashes(a, b) == [] and clashes(b, a) == []
    assert {n.netns for n in a.nodes}.isdisjoint(n.netns for n in b.nodes)
    assert b.node("dc-a-gw").netns == "dc2-dc-a-gw" and b.mgmt_bridge == "dc2-mgmt" and b.host_link(3) == "dc2-m3"


def test_a_lab_clashes_with_a_copy_of_itself_on_everything_host_wide() -> None:
    p = plan()
    found = " | ".join(clashes(p, p))
    for what in ("dcl-* (emulation.prefix)", "/run/dcilab/emulated-dci (emulation.state_dir)",
                 "management networks overlap", "port 8428 (metrics.url)", "port 6817 (emulation.slurm_port)"):
        assert what in found, (what, found)


def test_the_plan_round_trips_through_json_and_its_digest_is_stable() -> None:
    p = plan()
    assert LabPlan.from_json(p.to_json()) == p
    assert plan().digest == p.digest
