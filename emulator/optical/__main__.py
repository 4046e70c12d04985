"""``python -m emulator.optical --config FILE.json``: run one emulated OTN terminal or ROADM
(config documented in the package docstring)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import NoReturn

from . import load_config, make_device

PROG = "emulator.optical"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog=f"python -m {PROG}", description="Emulated OTN terminal / ROADM (NETCONF over SSH).")
    ap.add_argument("--config", required=True, help="device config (JSON)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ValueError as exc:
        print(f"{PROG}: bad config: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format=f"%(asctime)s {cfg.name} %(levelname)s %(message)s")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    try:
        dev = make_device(cfg)
        dev.start()
    except OSError as exc:
        print(f"{PROG}: {cfg.name}: cannot listen on {cfg.address}:{cfg.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    if cfg.pidfile:
        os.makedirs(os.path.dirname(cfg.pidfile) or ".", exist_ok=True)
        with open(cfg.pidfile + ".tmp", "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(cfg.pidfile + ".tmp", cfg.pidfile)
    logging.info("ready: %s %s/%s on %s:%d, line %s", cfg.name, cfg.role, cfg.personality, cfg.address,
                 dev.port, cfg.line_socket)
    try:
        sig = signal.sigwait({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
        logging.info("stopping on %s", signal.Signals(sig).name)
    finally:
        dev.stop()
        if cfg.pidfile:
            try:
                with open(cfg.pidfile) as f:
                    if f.read().strip() == str(os.getpid()):
                        os.unlink(cfg.pidfile)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
