"""Jobs through the emulated lab's real Slurm (Debian's munged, slurmctld, slurmd): every GPU node
is a Slurm node in its own namespace; a job goes through srun, streams its iterations, ends with
scancel leaving nothing; Slurm's refusals are the scheduler's cause; a SIGKILLed controller's job
is cancelled by `lab restore`; a trial case through Slurm gets the same kind of verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from testbed.emulated_lab import lab_plan, slurm_conf
from testbed.inventory import load_inventory
from testbed.jobs import COMPLETED, INTERRUPTED, JobError
from testbed.jobs.events import SCHEDULER
from testbed.jobs.slurm import SlurmTrainingJob, client_for, job_name
from tests.test_jobs_lab import CONTROLLER, sigkill_once_training
from tests.test_slurm import slurm_inventory

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[1]
NODES = ["dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2"]
BASE = ["--model", "test", "--pp", "2", "--dp", "2", "--threads", "1", "--warmup", "2", "--placement", "pp-remote"]


def rid(tag: str) -> str:
    return f"t-{tag}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def slurm_inv(emulated_lab, tmp_path):  # type: ignore[no-untyped-def]
    inv = load_inventory(slurm_inventory(tmp_path))
    assert lab_plan(inv).scheduler is not None, "the emulated lab runs Slurm"
    return inv


def slurm(inv, *argv: str) -> str:  # type: ignore[no-untyped-def]
    return subprocess.run(argv, env={**os.environ, "SLURM_CONF": slurm_conf(inv)}, capture_output=True, text=True,
                          check=True, timeout=60).stdout


def on_nodes(run_id: str) -> dict[str, list[str]]:
    """Processes of the run in each GPU node's namespace (read from /proc: no login needed)."""
    out: dict[str, list[str]] = {}
    for n in NODES:
        pids = subprocess.run(["ip", "netns", "pids", f"dcl-{n}"], capture_output=True, text=True).stdout.split()
        for p in pids:
            try:
                cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"--run-id {run_id}" in cmd:
                out.setdefault(n, []).append(cmd[:120])
    return out


def test_every_gpu_node_is_a_slurm_node_in_its_own_namespace(slurm_inv):  # type: ignore[no-untyped-def]
    states = dict(x.split() for x in slurm(slurm_inv, "sinfo", "-h", "-N", "-p", "dci", "-o", "%N %t").splitlines())
    assert set(states) == {"dc-a-gpu1", "dc-a-gpu2", "dc-a-gpu3", "dc-a-gpu4", "dc-b-gpu1", "dc-b-gpu2"}
    out = slurm(slurm_inv, "srun", "-p", "dci", "-N6", "--ntasks-per-node=1", "--label", "sh", "-c",
                'echo "$(hostname) $(ip -4 -o addr show fab0 | cut -d" " -f7)"')
    seen = dict(x.split(": ", 1)[1].split() for x in out.splitlines())
    assert seen == {"dc-a-gpu1": "198.18.1.11/24", "dc-a-gpu2": "198.18.1.12/24", "dc-a-gpu3": "198.18.1.13/24",
                    "dc-a-gpu4": "198.18.1.14/24", "dc-b-gpu1": "198.18.2.11/24", "dc-b-gpu2": "198.18.2.12/24"}
    # each node's 8 GPUs (gpus: 8) are a GRES that Slurm hands out, and it refuses a 9th
    gres = dict(x.split() for x in slurm(slurm_inv, "sinfo", "-h", "-N", "-p", "dci", "-o", "%N %G").splitlines())
    assert set(gres.values()) == {"gpu:8"}, gres
    out = slurm(slurm_inv, "srun", "-p", "dci", "-w", "dc-b-gpu1", "--gres=gpu:3", "printenv", "CUDA_VISIBLE_DEVICES")
    assert out.split() == ["0,1,2"]
    nine = subprocess.run(["srun", "-p", "dci", "-w", "dc-b-gpu1", "--gres=gpu:9", "--immediate=5", "true"],
                          env={**os.environ, "SLURM_CONF": slurm_conf(slurm_inv)}, capture_output=True, text=True,
                          timeout=60)
    assert nine.returncode != 0 and "configuration is not available" in nine.stderr, nine.stderr


def test_a_job_through_slurm_streams_its_iterations_and_ends_with_nothing_left(slurm_inv, tmp_path):  # type: ignore[no-untyped-def]
    run_id = rid("slurm")
    with SlurmTrainingJob(slurm_inv, NODES, BASE + ["--steps", "100000"], run_id, report_dir=tmp_path,
                          metrics=None, pg_timeout_s=30) as job:
        job.wait_for_iteration(3, 240)
        assert on_nodes(run_id).keys() == set(NODES)       # a torchrun on every node, started by slurmd
        assert job.slurm_job_id and slurm(slurm_inv, "squeue", "-h", "-n", job_name(run_id), "-o", "%T").strip() == \
            "RUNNING"
        out = job.end("test")
    assert out.status == COMPLETED and out.cause == "ended" and out.iterations >= 4 and out.leftovers == {}
    assert slurm(slurm_inv, "squeue", "-h", "-n", job_name(run_id)).strip() == ""
    deadline = time.monotonic() + 30
    while on_nodes(run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert on_nodes(run_id) == {}
    assert [e.step for e in job.events][:4] == [0, 1, 2, 3]
    assert all(job.logs[n].read_text() for n in NODES) and (tmp_path / "srun.log").exists()


def test_what_slurm_refuses_is_the_scheduler_s_cause(slurm_inv, tmp_path):  # type: ignore[no-untyped-def]
    (tmp_path / "p").mkdir()
    nope = load_inventory(slurm_inventory(tmp_path / "p", partition="nope"))
    with pytest.raises(JobError, match="partition 'nope' does not exist"):
        SlurmTrainingJob(nope, NODES, BASE, rid("part"), report_dir=tmp_path / "a", metrics=None).start()
    # a node busy with another job past the pending deadline: srun --immediate gives up
    env = {**os.environ, "SLURM_CONF": slurm_conf(slurm_inv)}
    blocker = subprocess.Popen(["srun", "-p", "dci", "-N1", "-w", "dc-b-gpu2", "--job-name=dcilab-test-blocker",
                                "sleep", "120"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "RUNNING" not in slurm(slurm_inv, "squeue", "-h", "-n", "dcilab-test-blocker", "-o", "%T"):
            assert time.monotonic() < deadline, "the blocking job did not start"
            time.sleep(0.2)
        (tmp_path / "q").mkdir()
        inv = load_inventory(slurm_inventory(tmp_path / "q", pending_timeout_s=3))
        with SlurmTrainingJob(inv, NODES, BASE, rid("busy"), report_dir=tmp_path / "b", metrics=None) as job:
            out = job.wait(120)
        assert out.status == INTERRUPTED and out.cause == SCHEDULER, out
        assert "Requested nodes are busy" in out.detail and out.iterations == 0
    finally:
        subprocess.run(["scancel", "-n", "dcilab-test-blocker"], env=env, timeout=30)
        blocker.wait(60)


def test_a_controller_with_another_munge_key_is_told_so(slurm_inv, tmp_path):  # type: ignore[no-untyped-def]
    """This controller's munged holds a key that is not the cluster's: Slurm refuses every request;
    the job is not started and the error names the scheduler, the job and the key."""
    from testbed.jobs.slurm import SlurmClient
    sock, key = tmp_path / "munge.sock", tmp_path / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munged = subprocess.Popen(["munged", "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
                               f"--pid-file={tmp_path}/munged.pid", f"--seed-file={tmp_path}/munged.seed",
                               f"--log-file={tmp_path}/munged.log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not sock.exists():
            assert munged.poll() is None and time.monotonic() < deadline, "the test's munged did not start"
            time.sleep(0.1)
        conf = tmp_path / "slurm.conf"
        conf.write_text("\n".join(f"AuthInfo=socket={sock}" if ln.startswith("AuthInfo=") else ln
                                  for ln in Path(slurm_conf(slurm_inv)).read_text().splitlines()) + "\n")
        with pytest.raises(JobError, match="Zero Bytes.*munge key is not the cluster's") as err:
            SlurmClient(partition="dci", conf=str(conf)).check(NODES)
        assert str(err.value).startswith("slurm: sinfo")
    finally:
        munged.terminate()
        munged.wait(10)


def test_a_job_when_slurmctld_is_down_is_not_started_and_says_so(slurm_inv, emulated_lab, tmp_path):  # type: ignore[no-untyped-def]
    from emulator.lab import build
    state = json.loads((Path(emulated_lab.state_dir) / "lab.json").read_text())
    os.kill(state["pids"]["slurmctld"], 9)
    try:
        run_id = rid("down")
        with pytest.raises(JobError, match="slurmctld does not answer") as err:
            SlurmTrainingJob(slurm_inv, NODES, BASE, run_id, report_dir=tmp_path / "a", metrics=None).start()
        assert f"job {job_name(run_id)} was not started" in str(err.value)
        assert on_nodes(run_id) == {}
    finally:
        assert build.up(emulated_lab, log=lambda *_: None) == "built"   # the lab as it was found


def test_lab_restore_cancels_the_slurm_job_of_a_sigkilled_controller(slurm_inv, tmp_path):  # type: ignore[no-untyped-def]
    """The controller's srun is in a session of its own: SIGKILL of the controller leaves the job
    running in Slurm; it was journaled with its scancel, which `lab restore` sends."""
    from testbed.faults import Journal, restore
    from testbed.faults.journal import journal_dir
    run_id = rid("orphan")
    code = CONTROLLER.format(root=str(ROOT), inv=str(slurm_inv.source), nodes=NODES, run_id=run_id,
                             rd=str(tmp_path / "r"), args=BASE + ["--steps", "500"])
    sigkill_once_training(code)         # the same controller as over SSH: the inventory picks Slurm
    assert "RUNNING" in slurm(slurm_inv, "squeue", "-h", "-n", job_name(run_id), "-o", "%T")
    assert [e.kind for e in Journal(journal_dir(slurm_inv)).entries() if e.target == run_id] == ["TrainingJob"]
    rep = restore(slurm_inv, log=lambda m: None)
    assert rep.ok, (rep.problems, rep.baseline)
    assert any("scancel_job" in a for a in rep.actions), rep.actions
    deadline = time.monotonic() + 60
    while (slurm(slurm_inv, "squeue", "-h", "-n", job_name(run_id)).strip() or on_nodes(run_id)) \
            and time.monotonic() < deadline:
        time.sleep(0.3)
    assert slurm(slurm_inv, "squeue", "-h", "-n", job_name(run_id)).strip() == "" and on_nodes(run_id) == {}
    assert not [e for e in Journal(journal_dir(slurm_inv)).entries() if e.target == run_id]
    assert client_for(slurm_inv).job_ids(job_name(run_id)) == []


def test_a_trial_case_through_slurm_is_judged_like_one_over_ssh(slurm_inv, tmp_path):  # type: ignore[no-untyped-def]
    rep = tmp_path / "rep"
    r = subprocess.run([sys.executable, "-m", "testbed.cli", "trial", "--inventory", str(slurm_inv.source),
                        "--profile", "quick", "-k", "convergence and pp-remote and 16", "--report-dir", str(rep),
                        "--no-single-site", "--no-compare"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((rep / "summary.json").read_text())
    assert s["testbed"]["launcher"] == {"kind": "slurm", "partition": "dci", "account": None}
    (case,) = s["cases"]
    assert case["status"] == "completed", case
    assert (rep / "cases" / case["job_id"] / "srun.log").exists()
    assert case["verdict"] in ("pass", "fail") or any("too noisy" in p for p in case["problems"]), case
    assert slurm(slurm_inv, "squeue", "-h").strip() == ""


def test_the_probe_beside_a_slurm_job_runs_as_steps_of_that_job_not_over_ssh(slurm_inv, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """Through Slurm nobody logs in to the nodes: the trial's probe runs as steps of the training
    job's own allocation (srun --jobid --overlap, no GPUs) and its frames cross the line."""
    import testbed.connect
    from testbed.trial.runner import CaseRunner, ProbePlan

    def no_ssh(inv, name):  # type: ignore[no-untyped-def]
        raise AssertionError(f"logged in to {name} over SSH")
    monkeypatch.setattr(testbed.connect, "connect_gpu_node", no_ssh)
    run_id = rid("probe")
    said: list[str] = []
    runner = type("R", (), {"inv": slurm_inv, "progress": staticmethod(said.append)})()
    with SlurmTrainingJob(slurm_inv, NODES, BASE + ["--steps", "100000"], run_id, report_dir=tmp_path,
                          metrics=None, pg_timeout_s=30) as job:
        job.wait_for_iteration(1, 240)
        probe = CaseRunner._start_probe(runner, ProbePlan("dc-a-gpu1", "dc-b-gpu1", rate_pps=200, max_s=60),  # type: ignore[arg-type]
                                        tmp_path / "probe", job)
        assert not isinstance(probe, str), probe
        try:
            steps = slurm(slurm_inv, "squeue", "-h", "-s", "-j", str(job.slurm_job_id), "-o", "%i %N")
            probe_steps = [s for s in steps.splitlines() if not s.split()[0].endswith((".0", ".extern", ".batch"))
                           and "." in s.split()[0]]
            assert {s.split()[1] for s in probe_steps} >= {"dc-a-gpu1", "dc-b-gpu1"}, steps
            time.sleep(2)
            report = probe.finish(early=True)
        finally:
            probe.close()
        assert report["unique"] > 100 and report["lost"] == 0, report
        out = job.end("test")
    assert out.status == COMPLETED
    assert (tmp_path / "probe" / "probe-recv-dc-b-gpu1.log").exists()
    assert not list(Path("/tmp").glob(f"dcilab-probe-{probe.tag}.*"))       # its folders are gone
    assert slurm(slurm_inv, "squeue", "-h", "-n", job_name(run_id)).strip() == ""


def test_where_slurm_owns_the_nodes_the_trial_reaches_them_through_slurm_not_ssh(slurm_inv, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """The trial's reads of the GPU nodes before its jobs (do they answer, their software for the
    testbed snapshot) go through srun; while a job holds a node whole, a command for it is refused
    at once with Slurm's words rather than waiting."""
    import drivers.gpu_node
    from testbed.connect import connect
    from testbed.jobs.slurm_step import StepNode
    from testbed.snapshot import snapshot

    def no_ssh(self, *a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("logged in to a GPU node over SSH")
    monkeypatch.setattr(drivers.gpu_node.GpuNode, "__init__", no_ssh)
    node = connect(slurm_inv, "dc-b-gpu2")
    assert isinstance(node, StepNode)
    assert node.check("hostname").stdout.strip() == "dc-b-gpu2"      # the node's own namespace, as Slurm knows it
    snap = snapshot(slurm_inv, timeout_s=120)
    for n in NODES:
        assert "error" not in snap["devices"][n] and snap["devices"][n]["python"], snap["devices"][n]
    run_id = rid("busy")
    with SlurmTrainingJob(slurm_inv, NODES, BASE + ["--steps", "100000"], run_id, report_dir=tmp_path,
                          metrics=None, pg_timeout_s=30) as job:
        job.wait_for_iteration(1, 240)
        t0 = time.monotonic()
        with pytest.raises(Exception, match="slurm: srun on dc-a-gpu1"):
            StepNode(client_for(slurm_inv), None, "dc-a-gpu1", immediate_s=3).check("true")
        assert time.monotonic() - t0 < 60
        job.end("test")
