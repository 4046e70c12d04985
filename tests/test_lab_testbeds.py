"""Several emulated labs on one machine (issue 18 item 3): inventory/emulated-2.yaml comes up
beside inventory/emulated.yaml, each works, and each goes down alone.  Needs root."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from emulator.lab import build
from emulator.lab.plan import LabPlan
from emulator.lab.sys import LabError
from testbed.emulated_lab import lab_plan
from testbed.inventory import load_inventory

pytestmark = pytest.mark.lab


def replies(plan: LabPlan, src: str, dst: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", plan.node(src).netns, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2",
                          plan.node(dst).data_ip or ""], capture_output=True, text=True, timeout=30).stdout
    return len(re.findall(r"time=[\d.]+ ms", out))


def names(prefix: str) -> list[str]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.split("\n")
    return ([ln.split()[0] for ln in netns if ln.startswith(f"{prefix}-")]
            + [ln.split(":")[1].strip().split("@")[0] for ln in links
               if ln.count(":") > 1 and ln.split(":")[1].strip().startswith(f"{prefix}-")])


def processes_naming(text: str) -> list[str]:
    return [p for p in subprocess.run(["ps", "-ewwo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
            if text in p and "ps -ewwo" not in p]


def test_a_second_lab_comes_up_beside_the_first_and_goes_down_alone(emulated_lab: LabPlan) -> None:
    second = lab_plan(load_inventory("inventory/emulated-2.yaml"))
    assert second.prefix != emulated_lab.prefix
    try:
        assert build.up(second, log=lambda *_: None) == "built"
        for plan in (emulated_lab, second):
            st = build.status(plan)
            assert st.ok, [(r.name, r.detail) for r in st.rows if not r.ok]
            assert replies(plan, "dc-a-gpu1", "dc-b-gpu2") == 3      # each lab's own optical line carries
        assert {r.name for r in build.status(second).rows} >= {"metrics-store", "scheduler", "optical-line"}
        # the same device names, in different namespaces, on different management networks
        assert second.node("dc-a-gpu1").netns == "dc2-dc-a-gpu1" and "dc2-mgmt" in names("dc2")
        assert processes_naming(f"-storageDataPath={second.store.data_dir}")           # type: ignore[union-attr]
        assert processes_naming(f"-f {second.state_dir}/slurm/slurm.conf")

        build.down(second, quiet=True)
        assert names("dc2") == []
        assert not Path(second.state_dir).exists()
        assert processes_naming(f"-storageDataPath={second.store.data_dir}") == []     # type: ignore[union-attr]
        assert processes_naming(f"{second.state_dir}/") == []
        # the first lab did not notice
        st = build.status(emulated_lab)
        assert st.ok, [(r.name, r.detail) for r in st.rows if not r.ok]
        assert processes_naming(f"-storageDataPath={emulated_lab.store.data_dir}")     # type: ignore[union-attr]
        assert replies(emulated_lab, "dc-a-gpu1", "dc-b-gpu2") == 3
    finally:
        build.down(second, quiet=True)


def test_a_lab_that_would_take_the_first_labs_names_is_refused_before_anything_is_touched(
        emulated_lab: LabPlan) -> None:
    second = lab_plan(load_inventory("inventory/emulated-2.yaml"))
    thief = LabPlan(**{**second.__dict__, "prefix": emulated_lab.prefix,
                       "nodes": tuple(n.__class__(**{**n.__dict__, "prefix": emulated_lab.prefix}) for n in second.nodes),
                       "fabrics": tuple(f.__class__(**{**f.__dict__, "prefix": emulated_lab.prefix})
                                        for f in second.fabrics)})
    try:
        with pytest.raises(LabError) as err:
            build.up(thief, log=lambda *_: None)
        msg = str(err.value)
        assert f"beside lab {emulated_lab.name}" in msg and "emulation.prefix" in msg and "emulated-2.yaml" in msg
        assert not Path(thief.state_dir).exists()
        st = build.status(emulated_lab)
        assert st.ok, [(r.name, r.detail) for r in st.rows if not r.ok]
    finally:
        build.down(second, quiet=True)


def test_lab_down_all_removes_every_lab(emulated_lab: LabPlan) -> None:
    import sys
    second = lab_plan(load_inventory("inventory/emulated-2.yaml"))
    try:
        build.up(second, log=lambda *_: None)
        dcilab = Path(sys.executable).with_name("dcilab")
        r = subprocess.run([str(dcilab), "lab", "down", "--all"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert names("dcl") == [] and names("dc2") == [] and not Path("/run/dcilab").exists()
        assert processes_naming("-storageDataPath=/var/lib/dcilab/") == []
    finally:
        build.down(second, quiet=True)
        build.up(emulated_lab, log=lambda *_: None)     # as found, for the tests after this one
