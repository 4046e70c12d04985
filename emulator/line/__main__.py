"""``python -m emulator.line --config FILE.json``: run one emulated optical line.

Order matters: TAPs first, then the forwarding children, then the pidfile, and the control
socket last, so a client that sees the socket knows the interfaces exist and frames flow.
SIGTERM/SIGINT stop everything and remove the socket and pidfile; the TAPs vanish with the
processes. Exit codes: 0 clean stop, 1 runtime failure, 2 bad config or arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import NoReturn

from emulator.jsonfile import read_json

from .control import ControlServer, LineService
from .forwarder import Shared, start_forwarders, stop_forwarders
from .model import LineConfig, propagation_delay_s
from .netns import NetnsError, open_tap

PROG = "emulator.line"
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: {message}", file=sys.stderr)
        sys.exit(2)


def load_config(path: str) -> LineConfig:
    """Read and validate the JSON config; every failure is a ValueError with one clear line."""
    data = read_json(path)
    try:
        return LineConfig.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _log(cfg: LineConfig, msg: str) -> None:
    print(f"line {cfg.name}: {msg}", file=sys.stderr, flush=True)


def _write_pidfile(path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(tmp, path)


def _remove_pidfile(path: str) -> None:
    try:
        with open(path) as f:
            if f.read().strip() != str(os.getpid()):
                return  # a successor owns it now
        os.unlink(path)
    except OSError:
        pass


def run(cfg: LineConfig) -> int:
    # Block stop signals before any fork or thread exists: every thread inherits the mask and
    # the main thread collects them with sigtimedwait, so no handler can interrupt cleanup.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS | {signal.SIGCHLD})
    fds: list[int] = []
    pids: list[int] = []
    server: ControlServer | None = None
    service: LineService | None = None
    rc = 0
    try:
        try:
            for end in cfg.ends:
                fds.append(open_tap(end.netns, end.ifname, cfg.mtu))
        except NetnsError as exc:
            _log(cfg, f"error: {exc.strerror}")
            return 1
        shared = Shared(len(cfg.paths))
        service = LineService(cfg, shared)
        pids = start_forwarders(fds[0], fds[1], shared, read_size=cfg.mtu + 64, seed=cfg.seed,
                                 transport=cfg.transport)
        for fd in fds:  # the children hold the TAPs now; they vanish when the children exit
            os.close(fd)
        fds = []
        service.start()  # the protection timer thread: only now that the children are forked
        if cfg.pidfile:
            _write_pidfile(cfg.pidfile)
        try:
            server = ControlServer(cfg.control_socket, service)
            server.start()
        except OSError as exc:
            _log(cfg, f"error: cannot serve control socket: {exc.strerror or exc}")
            return 1
        active = cfg.paths[cfg.active_index]
        _log(cfg, f"ready: {cfg.ends[0].netns}/{cfg.ends[0].ifname} <-> "
                  f"{cfg.ends[1].netns}/{cfg.ends[1].ifname}, path {active.name} "
                  f"({propagation_delay_s(active.length_km) * 1e3:.3f} ms), "
                  f"rate {cfg.rate_bps or 'unlimited'} bit/s, control {cfg.control_socket}")
        tc = cfg.transport
        if tc is not None and tc.enabled:
            _log(cfg, f"transport model {tc.model}: ACK timeout {tc.t_ack_s:.3f} s (timeout {tc.timeout}), "
                      f"retry budget {tc.budget_s:.1f} s (retry_cnt {tc.retry_cnt}), adaptive retransmission "
                      f"{'on' if tc.adaptive_retransmission else 'off'}, MTU {tc.mtu}, real rate = rate / {tc.scale:g}")
        if cfg.protection is not None:
            pc = cfg.protection
            _log(cfg, f"protection: mode {pc.mode}, working {pc.working}, protection {pc.protection}, "
                      f"hold-off {pc.hold_off_ms:g} ms, switch {pc.switch_ms:g} ms, "
                      f"{'revertive (WTR ' + format(pc.wtr_s, 'g') + ' s)' if pc.revertive else 'non-revertive'}, "
                      f"ASON {'on via ' + ','.join(pc.restoration) if pc.ason else 'off'}")
        while True:
            info = signal.sigtimedwait(STOP_SIGNALS | {signal.SIGCHLD}, 1.0)
            if info is not None and info.si_signo in STOP_SIGNALS:
                _log(cfg, f"stopping on {signal.Signals(info.si_signo).name}")
                return 0
            for pid in pids:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    _log(cfg, f"error: forwarding process {pid} died "
                              f"(exit status {os.waitstatus_to_exitcode(status)}); stopping")
                    pids.remove(pid)
                    return 1
    except Exception as exc:  # noqa: BLE001 - one clear line, then clean up
        _log(cfg, f"error: {type(exc).__name__}: {exc}")
        rc = 1
        return rc
    finally:
        if server is not None:
            server.stop()
        if service is not None:
            service.stop()
        stop_forwarders(pids)
        for fd in fds:
            os.close(fd)
        if cfg.pidfile:
            _remove_pidfile(cfg.pidfile)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog=f"python -m {PROG}", description="Emulated optical DCI line over two TAPs.")
    ap.add_argument("--config", required=True, help="line config (JSON)")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ValueError as exc:
        print(f"{PROG}: bad config: {exc}", file=sys.stderr)
        return 2
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
