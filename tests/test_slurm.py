"""Jobs through Slurm without a lab: the launcher the inventory chooses, the srun command and each
node's dispatch, srun's labelled output streamed to the right node, the emulated Slurm's config,
and `lab restore`'s checks of a journaled Slurm job (testbed/jobs/slurm.py, emulator/lab/slurm.py)."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from emulator.lab.slurm import config_text
from testbed.emulated_lab import lab_plan
from testbed.faults.journal import Entry, Step
from testbed.faults.restore import untrusted_steps
from testbed.inventory import load_inventory
from testbed.jobs import TrainingJob
from testbed.jobs.slurm import NODE_TAG, SlurmTrainingJob, job_class

ROOT = Path(__file__).resolve().parents[1]
EMULATED = ROOT / "inventory" / "emulated.yaml"
NODES = ["dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2"]
ARGS = ["--model", "test", "--pp", "2", "--dp", "2", "--placement", "pp-remote"]


def slurm_inventory(tmp_path: Path, **scheduler: object) -> Path:
    """emulated.yaml with jobs through its Slurm (the same lab: the plan does not change)."""
    data = yaml.safe_load(EMULATED.read_text())
    for d in data["devices"]:
        if d.get("python"):
            d["python"] = os.path.normpath(EMULATED.parent / d["python"])
    data["scheduler"] = {"kind": "slurm", "partition": "dci", **scheduler}
    f = tmp_path / "emulated-slurm.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return f


def test_the_inventory_chooses_the_launcher_and_the_lab_stays_the_same(tmp_path: Path) -> None:
    plain, slurm = load_inventory(EMULATED), load_inventory(slurm_inventory(tmp_path))
    assert job_class(plain) is TrainingJob and job_class(slurm) is SlurmTrainingJob
    assert lab_plan(plain).digest == lab_plan(slurm).digest      # `lab up` of either finds the other's lab
    text = config_text(lab_plan(plain), lab_plan(plain).scheduler)
    assert "SlurmctldHost=dcilab-ctl(198.18.0.1)" in text and "AuthType=auth/munge" in text
    assert "NodeName=dc-b-gpu2 NodeAddr=198.18.0.14 CPUs=8 Gres=gpu:8 State=UNKNOWN" in text   # gpus: 8
    assert "PartitionName=dci Nodes=dc-a-gpu1,dc-a-gpu2,dc-a-gpu3,dc-a-gpu4,dc-b-gpu1,dc-b-gpu2" in text
    gpu = load_inventory(slurm_inventory(tmp_path, partition="gpu"))
    assert "PartitionName=gpu " in config_text(lab_plan(gpu), lab_plan(gpu).scheduler)


def test_srun_runs_each_nodes_own_torchrun(tmp_path: Path) -> None:
    inv = load_inventory(slurm_inventory(tmp_path, account="trial", pending_timeout_s=45))
    job = SlurmTrainingJob(inv, NODES, ARGS, "s-1", report_dir=tmp_path / "r", metrics=None, nproc_per_node=2)
    argv = job.srun_argv()
    for a in ("--job-name=dcilab-s-1", "--partition=dci", "--account=trial", "--nodes=4",
              "--nodelist=dc-a-gpu1,dc-a-gpu2,dc-b-gpu1,dc-b-gpu2", "--ntasks-per-node=1", "--cpus-per-task=2",
              "--gres=gpu:2", "--label", "--immediate=45"):
        assert a in argv, (a, argv)
    (tmp_path / "n").mkdir()
    no_gres = load_inventory(slurm_inventory(tmp_path / "n", gpu_gres=None))      # a cluster without GPU GRES
    argv0 = SlurmTrainingJob(no_gres, NODES, ARGS, "s-0", report_dir=tmp_path / "r0", metrics=None).srun_argv()
    assert not any(a.startswith("--gres") for a in argv0)
    script = argv[-1]
    assert argv[-3:-1] == ["bash", "-c"]
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0          # it parses
    for spec in job.specs:     # every node starts its own command, with its own address and env
        arm = next(x for x in script.splitlines() if x.startswith(f"  {spec.name})"))
        assert job.node_command(spec) in arm and "GLOO_SOCKET_IFNAME=fab0" in arm
        assert f"--local-addr {spec.data_address}" in arm and "--nproc-per-node 2" in arm
    assert job.remote_dir == str(tmp_path / "r" / "node") and job.ship is False
    with pytest.raises(Exception, match="nothing is shipped"):
        SlurmTrainingJob(inv, NODES, ARGS, "s-2", report_dir=tmp_path / "r2", metrics=None, ship=True)
    with pytest.raises(Exception, match="cannot kill one rank"):
        job.kill_rank("dc-a-gpu1")


def test_labelled_lines_reach_their_node_and_srun_s_own_words_are_kept(tmp_path: Path) -> None:
    """srun --label prefixes every task's line with its task number; the task's first line names
    its node, so the lines after it go to that node's log, evidence and iteration parser."""
    inv = load_inventory(slurm_inventory(tmp_path))
    job = SlurmTrainingJob(inv, NODES, ARGS, "s-3", report_dir=tmp_path / "r", metrics=None)
    job.report_dir.mkdir(parents=True)
    for s in job.specs:
        job._logf[s.name] = open(job.logs[s.name], "a", buffering=1)
    it = ('{"step":0,"start_ns":1,"end_ns":2,"duration_s":1.5,"tokens_per_s":10.0,"loss":2.0,'
          '"layout":"tp1-pp2-dp2","placement":"pp-remote","warmup":true,"model":"test"}')
    lines = ["srun: job 42 queued and waiting for resources", f" 1: {NODE_TAG} dc-b-gpu1 42",
             f" 0: {NODE_TAG} dc-a-gpu1 42", f" 0: {it}", " 1: torch.distributed ... Connection reset by peer",
             " 1: DCILAB-EXIT 1", "srun: error: dc-b-gpu1: task 1: Exited with exit code 1", ""]
    r, w = os.pipe()
    with os.fdopen(w, "wb") as f:
        f.write("\n".join(lines).encode())
    t = threading.Thread(target=job._read, args=(os.fdopen(r, "rb"),))
    t.start()
    t.join(10)
    assert job.slurm_job_id == "42"
    assert [e.step for e in job.events] == [0] and job.events[0].node == "dc-a-gpu1"
    assert job.evidence["dc-b-gpu1"].exit_code == 1 and job.evidence["dc-a-gpu1"].exit_code is None
    assert job.srun_messages == [lines[0], lines[-2]]
    for f in job._logf.values():
        f.close()
    assert "Connection reset by peer" in job.logs["dc-b-gpu1"].read_text()
    assert it in job.logs["dc-a-gpu1"].read_text() and NODE_TAG not in job.logs["dc-a-gpu1"].read_text()


def test_restore_cancels_a_slurm_job_only_through_the_inventory_s_scheduler(tmp_path: Path) -> None:
    step = Step("dc-a-gpu1", "scancel_job", {"run_id": "r-1"}, "scancel")
    e = Entry(id="x", kind="TrainingJob", target="r-1", undo=[step], apply=[], inventory="", pid=1, host="h",
              created_wall_ns=0, state="applied")
    assert untrusted_steps(load_inventory(slurm_inventory(tmp_path)), e) == []
    assert any("scheduler: block" in x for x in untrusted_steps(load_inventory(EMULATED), e))
    bad = Entry(**{**e.__dict__, "undo": [Step("dc-a-gpu1", "scancel_job", {"run_id": "../x; rm"}, "")]})
    assert untrusted_steps(load_inventory(slurm_inventory(tmp_path)), bad)


def test_slurms_words_for_an_unusable_scheduler_come_with_what_to_check() -> None:
    from testbed.jobs.slurm import hint
    down = hint("slurm_load_partitions: Unable to contact slurm controller (connect failure)", "/x/slurm.conf")
    assert "slurmctld does not answer" in down and "/x/slurm.conf" in down
    assert "munge key" in hint("slurm_load_partitions: Zero Bytes were transmitted or received", None)
    assert hint("Invalid partition name specified", None) == ""      # Slurm's own words suffice
