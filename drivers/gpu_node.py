"""GPU node over SSH (paramiko): run commands, copy files, and run long jobs in their own session
and process group so they can be streamed, and stopped for sure (the whole group, TERM then KILL,
then checked), even when the job forks workers.  Host keys: RejectPolicy + a pinned key."""

from __future__ import annotations

import queue
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paramiko

from . import SshTarget, map_ssh_error, pinned_host_key
from .errors import DeviceUnreachable, DriverError, EditRejected, Timeout
from .facts import NODE_FACTS_SCRIPT, NodeFacts, parse_node_facts

PGID_TAG = "DCILAB-PGID"


@dataclass(frozen=True)
class RunResult:
    rc: int
    stdout: str
    stderr: str
    elapsed_s: float


@dataclass(frozen=True)
class StopResult:
    pgid: int
    signal: str          # 'none' (already gone), 'TERM' or 'KILL': what ended the group
    elapsed_s: float


def node_facts(node: Any, python: str, timeout: float) -> NodeFacts:
    """``node.run`` the facts script with ``python`` and parse it (any node driver with ``run``:
    over SSH here, through Slurm in testbed/jobs/slurm_step.py)."""
    r = node.run(f"{shlex.quote(python)} -c {shlex.quote(NODE_FACTS_SCRIPT)}", timeout)
    if r.rc != 0:
        raise DriverError(f"{python} could not report its facts (exit {r.rc}): "
                          f"{(r.stderr or r.stdout).strip()[-300:]}", node.name)
    try:
        return parse_node_facts(r.stdout)
    except ValueError as exc:
        raise DriverError(f"{python}: {exc}", node.name) from None


def private_dir(node: Any, prefix: str, parent: str = "/tmp", timeout: float = 30.0) -> str:
    """``mktemp -d PARENT/PREFIX.XXXXXXXXXX`` through ``node.check`` (any node driver), checked."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", prefix):
        raise ValueError(f"private_dir prefix {prefix!r}: letters, digits, '_', '.', '-' only")
    path = node.check(f"mktemp -d {shlex.quote(parent)}/{prefix}.XXXXXXXXXX", timeout=timeout).stdout.strip()
    if not path.startswith(parent.rstrip("/") + "/" + prefix + ".") or "\n" in path:
        raise EditRejected(f"mktemp -d returned {path!r}", node.name)
    return path


class GpuNode:
    """One SSH connection to a GPU node."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.name = target.label
        key = pinned_host_key(target)
        self.client = paramiko.SSHClient()
        host = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
        self.client.get_host_keys().add(host, key.get_name(), key)
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            self.client.connect(target.host, port=target.port, username=target.username, password=target.password,
                                key_filename=target.key_path, passphrase=target.key_passphrase,
                                look_for_keys=False, allow_agent=False, timeout=target.timeout_s,
                                banner_timeout=target.timeout_s, auth_timeout=target.timeout_s)
        except Exception as exc:  # noqa: BLE001
            self.client.close()
            raise map_ssh_error(exc, target) from None

    def close(self) -> None:
        self.client.close()

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exec(self, cmd: str, timeout: float) -> paramiko.Channel:
        try:
            chan = self.client.get_transport().open_session(timeout=timeout)  # type: ignore[union-attr]
            chan.settimeout(timeout)
            chan.exec_command(cmd)
            return chan
        except Exception as exc:  # noqa: BLE001
            raise map_ssh_error(exc, self.target) from None

    def run(self, cmd: str, timeout: float = 60.0) -> RunResult:
        """Run a shell command; Timeout (channel closed) if it has not finished in ``timeout`` s."""
        t0 = time.monotonic()
        chan = self._exec(cmd, timeout)
        out, err = bytearray(), bytearray()
        deadline = t0 + timeout
        try:
            while not (chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready()):
                if time.monotonic() > deadline:
                    raise Timeout(f"{cmd!r} did not finish within {timeout:g} s", self.name)
                got = False
                if chan.recv_ready():
                    out += chan.recv(65536)
                    got = True
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    got = True
                if not got:
                    time.sleep(0.005)
            rc = chan.recv_exit_status()
        finally:
            chan.close()
        return RunResult(rc, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - t0)

    def check(self, cmd: str, timeout: float = 60.0) -> RunResult:
        """run(), raising EditRejected with stderr when rc != 0."""
        r = self.run(cmd, timeout)
        if r.rc != 0:
            raise EditRejected(f"{cmd!r} exited {r.rc}: {(r.stderr or r.stdout).strip()[-300:]}", self.name)
        return r

    def facts(self, python: str = "python3", timeout: float = 120.0) -> NodeFacts:
        """Python, torch, CUDA/NCCL or gloo, kernel and hostname as ``python`` (the interpreter
        jobs run with: what matters is what training will import) reports them, in one command."""
        return node_facts(self, python, timeout)

    def _sftp(self) -> paramiko.SFTPClient:
        try:
            s = self.client.open_sftp()
            s.get_channel().settimeout(self.target.timeout_s * 6)  # type: ignore[union-attr]
            return s
        except Exception as exc:  # noqa: BLE001
            raise map_ssh_error(exc, self.target) from None

    def put(self, local: str, remote: str) -> None:
        with self._sftp() as s:
            try:
                s.put(local, remote)
            except OSError as exc:
                raise EditRejected(f"upload {local} -> {remote}: {exc}", self.name) from None

    def get(self, remote: str, local: str) -> None:
        with self._sftp() as s:
            try:
                s.get(remote, local)
            except OSError as exc:
                raise EditRejected(f"download {remote}: {exc}", self.name) from None

    def private_dir(self, prefix: str, parent: str = "/tmp") -> str:
        """A new folder only this login can use (``mktemp -d``: mode 0700, a name nobody can
        guess, created atomically), for code and logs a job unpacks on the node: a fixed
        ``/tmp/<name>`` could be created first by another user of the node, whose code would then
        run as this login."""
        return private_dir(self, prefix, parent, timeout=15)

    def start(self, cmd: str, log_path: str, on_line: Callable[[str], None] | None = None,
              env: dict[str, str] | None = None) -> RemoteJob:
        """Start ``cmd`` in a new session (``setsid -w``: its own process group, pgid = the
        wrapper shell's pid), output (stdout+stderr) appended to ``log_path`` and streamed back
        line by line.  ``tee -p`` keeps the log going if this controller disconnects."""
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in {"PYTHONUNBUFFERED": "1", **(env or {})}.items())
        # bash, not sh: the job's exit status is PIPESTATUS[0] (dash has no PIPESTATUS and would
        # report the status of tee)
        inner = f'echo "{PGID_TAG} $$"; {envs} sh -c "$1" 2>&1 | tee -p -a "$2"; exit "${{PIPESTATUS[0]}}"'
        wrapper = f"setsid -w bash -c {shlex.quote(inner)} dcilab-job {shlex.quote(cmd)} {shlex.quote(log_path)}"
        chan = self._exec(wrapper, self.target.timeout_s)
        chan.settimeout(None)
        job = RemoteJob(self, chan, cmd, log_path, on_line)
        job._await_pgid(self.target.timeout_s)
        return job


class RemoteJob:
    """A job started by :meth:`GpuNode.start`; a reader thread queues its output lines."""

    def __init__(self, node: GpuNode, chan: paramiko.Channel, cmd: str, log_path: str,
                 on_line: Callable[[str], None] | None) -> None:
        self.node = node
        self.chan = chan
        self.cmd = cmd
        self.log_path = log_path
        self.pgid: int | None = None
        self._on_line = on_line
        self._q: queue.Queue[str | None] = queue.Queue()
        self._pgid_seen = threading.Event()
        self._eof = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"job-{node.name}")
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                data = self.chan.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    self._line(raw.decode(errors="replace"))
            if buf:
                self._line(buf.decode(errors="replace"))
        except Exception:  # noqa: BLE001 - the channel died: end of stream
            pass
        finally:
            self._pgid_seen.set()
            self._eof.set()
            self._q.put(None)

    def _line(self, line: str) -> None:
        if self.pgid is None and line.startswith(PGID_TAG):
            self.pgid = int(line.split()[1])
            self._pgid_seen.set()
            return
        if self._on_line:
            self._on_line(line)
        self._q.put(line)

    def _await_pgid(self, timeout: float) -> None:
        if not self._pgid_seen.wait(timeout) or self.pgid is None:
            self.chan.close()
            raise DriverError(f"job {self.cmd!r} did not report its process group (is setsid installed?)",
                              self.node.name)

    def lines(self, timeout: float | None = None) -> Iterator[str]:
        """Output lines as they come, until the job's output ends (or ``timeout`` s passed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                return
            if line is None:
                self._q.put(None)   # later callers see the end too
                return
            yield line

    @property
    def running(self) -> bool:
        return not self.chan.exit_status_ready()

    def drain(self, timeout: float) -> bool:
        """Wait until every output line has gone to ``on_line`` (end of stream); False on timeout.

        The exit status can be ready while the reader thread still holds the job's last lines
        (SSH sends exit-status, then EOF): a caller that reads what those lines said, right after
        ``running`` turned False, waits here first."""
        return self._eof.wait(timeout)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while not self.chan.exit_status_ready():
            if time.monotonic() > deadline:
                raise Timeout(f"job {self.cmd!r} still running after {timeout:g} s", self.node.name)
            time.sleep(0.02)
        return self.chan.recv_exit_status()

    def alive_pids(self) -> list[int]:
        """Processes still in the job's process group (read on the node), zombies left out: they
        have exited and hold nothing, and an orphan's zombie waits for init to reap it (1.5-1.8 s
        measured where init is not a prompt reaper), which would only delay :meth:`stop`."""
        r = self.node.run(f"ps -e -o pid=,pgid=,stat= | awk '$2 == {int(self.pgid or -1)} && $3 !~ /^Z/ "
                          "{print $1}'", timeout=15)
        return [int(p) for p in r.stdout.split()]

    def stop(self, grace: float = 5.0) -> StopResult:
        """TERM (and CONT: a stopped process acts on TERM only once continued) the whole group,
        KILL what is left after ``grace`` s, then check nothing is left."""
        if self.pgid is None or self.pgid <= 1:
            raise DriverError("job has no process group to stop", self.node.name)
        t0 = time.monotonic()
        if not self.alive_pids():
            self.chan.close()
            return StopResult(self.pgid, "none", time.monotonic() - t0)
        self.node.run(f"kill -TERM -- -{self.pgid} 2>/dev/null; kill -CONT -- -{self.pgid} 2>/dev/null; true",
                      timeout=15)
        sig = "TERM"
        deadline = time.monotonic() + grace
        while self.alive_pids():
            if time.monotonic() > deadline:
                sig = "KILL"
                self.node.run(f"kill -KILL -- -{self.pgid} 2>/dev/null; true", timeout=15)
                for _ in range(50):
                    if not self.alive_pids():
                        break
                    time.sleep(0.1)
                else:
                    raise DriverError(f"processes {self.alive_pids()} of group {self.pgid} survive SIGKILL",
                                      self.node.name)
                break
            time.sleep(0.05)
        self.chan.close()
        return StopResult(self.pgid, sig, time.monotonic() - t0)

    def logs(self) -> str:
        """The job's log file as it is now."""
        r = self.node.run(f"cat {shlex.quote(self.log_path)}", timeout=30)
        if r.rc != 0:
            raise DeviceUnreachable(f"cannot read {self.log_path}: {r.stderr.strip()}", self.node.name)
        return r.stdout
