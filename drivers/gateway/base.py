"""The gateway framework: a netmiko session driven by a :class:`Dialect` (data: commands,
templates, regexes).  Nothing vendor-specific lives here."""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from netmiko import ConnectHandler
from netmiko.exceptions import NetmikoAuthenticationException, NetmikoTimeoutException, ReadTimeout

from .. import SshTarget, known_host_keys, map_ssh_error, pinned_host_key
from ..errors import AuthFailed, CommandRefused, DeviceUnreachable, DriverError, EditRejected, Timeout, Unsupported
from ..facts import DeviceFacts


@dataclass(frozen=True)
class Dialect:
    """A CLI dialect.  ``commands``: show commands (templates); ``config``: config-mode line
    templates, where a line '@name text' repeats per item of list parameter ``name``;
    ``parsers``: per command, {field: regex with one group} (searched MULTILINE)."""

    name: str
    netmiko_device_type: str
    wan_port: str
    enter_config: str
    exit_config: str
    config_prompt: str
    exec_prompt: str
    error_re: str
    commands: dict[str, list[str]]
    config: dict[str, list[str]]
    parsers: dict[str, dict[str, str]]
    paging_off: str | None = None
    logout: str | None = None
    """Sent, without waiting for an answer, when the driver closes (VRP: ``quit``); None closes the
    SSH channel only."""


@dataclass(frozen=True)
class Counters:
    port: str
    state: str
    rx_packets: int
    rx_bytes: int
    tx_packets: int
    tx_bytes: int
    rx_errors: int
    tx_errors: int
    rx_discards: int
    tx_discards: int
    in_rate_bps: int
    out_rate_bps: int
    shaping_kbps: int | None
    raw: str = field(default="", repr=False)


@dataclass(frozen=True)
class ConfigResult:
    lines: tuple[str, ...]
    output: str
    elapsed_s: float


class UnsafeCliText(DriverError):
    """A CLI line holding a line break or a control character; never sent."""


def check_cli_line(line: str, device: str | None = None) -> str:
    """``line`` itself when a CLI reads it as one line; UnsafeCliText otherwise.

    A device (and its saved configuration, replayed line by line) takes any break str.splitlines()
    honours, U+2028 included, for the end of a line: what follows would run as a command of its own.
    """
    for i, ch in enumerate(line):
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise UnsafeCliText(
                f"{line!r}: character {i + 1} is {ch!r}, which a CLI reads as the end of a line or a control "
                "key (what follows would run as a command of its own); nothing was sent. Fix: remove line "
                "breaks and control characters from the text (a description, a port name)", device)
    return line


def render(template: list[str], **params: Any) -> list[str]:
    """Template lines -> CLI lines; '@name line' repeats the line for each item of params[name]."""
    out: list[str] = []
    for line in template:
        if line.startswith("@"):
            name, rest = line[1:].split(" ", 1)
            out += [rest.format(item=item, **params) for item in params.get(name) or ()]
        else:
            out.append(line.format(**params))
    return out


def parse(text: str, regexes: dict[str, str]) -> dict[str, str | None]:
    """{field: first group of its regex in text, or None}."""
    out: dict[str, str | None] = {}
    for k, rx in regexes.items():
        m = re.search(rx, text, re.MULTILINE)
        out[k] = m.group(1) if m else None
    return out


def parse_counters(dialect: Dialect, port: str, text: str) -> Counters:
    v = parse(text, dialect.parsers["counters"])
    if v.get("rx_packets") is None:
        raise CommandRefused(f"cannot read counters of {port}: {text.strip()[:200]}")

    def i(k: str) -> int:
        return int(v.get(k) or 0)

    return Counters(port, v.get("state") or "unknown", i("rx_packets"), i("rx_bytes"), i("tx_packets"), i("tx_bytes"),
                    i("rx_errors"), i("tx_errors"), i("rx_discards"), i("tx_discards"), i("in_rate_bps"),
                    i("out_rate_bps"), int(v["shaping_kbps"]) if v.get("shaping_kbps") else None, text)


def cli_errors(dialect: Dialect, output: str) -> list[str]:
    return [m.group(0).strip() for m in re.finditer(dialect.error_re, output, re.MULTILINE)]


def shaping_kbps_for_ratio(fabric_gbps: float, ratio: float) -> int:
    """WAN shaping that makes the site's convergence ratio ``ratio``:1 (fabric / WAN), in kbit/s."""
    if ratio <= 0 or fabric_gbps <= 0:
        raise ValueError("fabric_gbps and ratio must be > 0")
    return int(fabric_gbps / ratio * 1e6)


class Gateway:
    """An AI gateway's CLI over netmiko (SSH host key verified, never auto-added)."""

    def __init__(self, target: SshTarget, dialect: Dialect, wan_port: str | None = None,
                 read_timeout_s: float = 20.0) -> None:
        self.target = target
        self.dialect = dialect
        self.name = target.label
        self.wan_port = wan_port or dialect.wan_port
        self.read_timeout_s = read_timeout_s
        self._tmp_known_hosts: str | None = None
        kh = self._known_hosts_file()
        try:
            self.conn = ConnectHandler(
                device_type=dialect.netmiko_device_type, host=target.host, port=target.port,
                username=target.username, password=target.password or "", use_keys=target.key_path is not None,
                key_file=target.key_path, passphrase=target.key_passphrase, allow_agent=False,
                ssh_strict=True, system_host_keys=False, alt_host_keys=True, alt_key_file=kh,
                conn_timeout=target.timeout_s, auth_timeout=target.timeout_s, banner_timeout=target.timeout_s,
                read_timeout_override=read_timeout_s, fast_cli=True)
        except NetmikoAuthenticationException as exc:
            raise AuthFailed(f"CLI login as {target.username!r} refused: {str(exc).splitlines()[0]}", self.name) from None
        except NetmikoTimeoutException as exc:
            raise DeviceUnreachable(f"no SSH session to {target.host}:{target.port}: {str(exc).splitlines()[0]}",
                                    self.name) from None
        except Exception as exc:  # noqa: BLE001 - paramiko: BadHostKey, SSHException ...
            raise map_ssh_error(exc, target) from None
        finally:
            self._drop_tmp()

    def _known_hosts_file(self) -> str:
        """netmiko reads host keys from a file: the inventory's, or one we write for a pinned fingerprint."""
        if self.target.known_hosts is not None:
            known_host_keys(self.target)   # fail early and clearly if the file lacks this host
            return self.target.known_hosts
        import tempfile
        key = pinned_host_key(self.target)
        host = self.target.host if self.target.port == 22 else f"[{self.target.host}]:{self.target.port}"
        with tempfile.NamedTemporaryFile("w", delete=False, suffix=".known_hosts") as f:
            f.write(f"{host} {key.get_name()} {key.get_base64()}\n")
        self._tmp_known_hosts = f.name
        return f.name

    def _drop_tmp(self) -> None:
        if self._tmp_known_hosts:
            import os
            try:
                os.unlink(self._tmp_known_hosts)
            except OSError:
                pass
            self._tmp_known_hosts = None

    def close(self) -> None:
        """Log out and close the SSH session.  Not netmiko's ``disconnect``: its graceful cleanup
        first asks whether the session is in config mode by reading the channel until it has been
        quiet for 2 s (measured: 2.2 s per gateway, 4.4 s between every two trial cases); this
        driver never leaves a session in config mode (``configure`` always leaves it), so it sends
        the dialect's logout line and closes."""
        conn = self.conn
        try:
            if self.dialect.logout:
                conn.write_channel(self.dialect.logout + conn.RETURN)
        except Exception:  # noqa: BLE001 - a session already gone: closing it is all that is left
            pass
        try:
            conn.paramiko_cleanup()
        except Exception:  # noqa: BLE001
            pass
        finally:
            conn.remote_conn = conn.remote_conn_pre = None
            logging.getLogger("netmiko").removeFilter(getattr(conn, "_secrets_filter", None))  # as disconnect does

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------------
    def _send(self, line: str, expect: str) -> str:
        check_cli_line(line, self.name)
        try:
            return self.conn.send_command(line, expect_string=expect, read_timeout=self.read_timeout_s,
                                          strip_prompt=True, strip_command=True)
        except ReadTimeout:
            raise Timeout(f"{line!r}: no prompt within {self.read_timeout_s:g} s", self.name) from None
        except (OSError, EOFError) as exc:
            raise DeviceUnreachable(f"{line!r}: session lost: {exc}", self.name) from None

    def show(self, key: str, **params: Any) -> str:
        if key not in self.dialect.commands:
            raise Unsupported("command", key, self.dialect.commands, self.name)
        cmds = [check_cli_line(c, self.name) for c in render(self.dialect.commands[key], **params)]
        out = "\n".join(self._send(c, self.dialect.exec_prompt) for c in cmds)
        errs = cli_errors(self.dialect, out)
        if errs:
            raise CommandRefused(f"{' / '.join(cmds)!r}: {'; '.join(errs)}", self.name)
        return out

    def configure(self, lines: list[str]) -> ConfigResult:
        """Enter config mode, send the lines, leave it.  Each line waits for the config prompt
        pattern (no netmiko prompt auto-detection); the first error stops and is raised after
        leaving config mode."""
        d = self.dialect
        for line in lines:  # all of them before config mode: a refused line leaves nothing half-sent
            check_cli_line(line, self.name)
        t0 = time.monotonic()
        outs = [self._send(d.enter_config, d.config_prompt)]
        err: list[str] = []
        try:
            for ln in lines:
                o = self._send(ln, d.config_prompt)
                outs.append(o)
                err = cli_errors(d, o)
                if err:
                    break
        finally:
            outs.append(self._send(d.exit_config, d.exec_prompt))
        if err:
            raise EditRejected(f"{ln!r}: {'; '.join(err)}", self.name)
        return ConfigResult(tuple(lines), "\n".join(outs), time.monotonic() - t0)

    def _config(self, key: str, **params: Any) -> ConfigResult:
        if key not in self.dialect.config:
            raise Unsupported("configuration", key, self.dialect.config, self.name)
        return self.configure(render(self.dialect.config[key], port=params.pop("port", self.wan_port), **params))

    # --- what the trial needs -----------------------------------------------------------------------------
    def facts(self) -> DeviceFacts:
        """Identity from the dialect's ``version`` command (and ``serial`` where it has one) read by
        its regexes: vendor, model, software_version and serial fill their fields, any other field
        goes to ``details``.  A device that refuses the serial command just has no serial."""
        got = parse(self.show("version"), self.dialect.parsers["version"])
        if "serial" in self.dialect.commands:
            try:
                got.update(parse(self.show("serial"), self.dialect.parsers["serial"]))
            except CommandRefused:
                pass
        vals = {k: v.strip() for k, v in got.items() if v and v.strip()}
        if not vals.get("software_version"):
            raise DriverError(f"cannot read a software version from {' / '.join(self.dialect.commands['version'])!r} "
                              f"(dialect {self.dialect.name})", self.name)
        return DeviceFacts(vendor=vals.pop("vendor", None), model=vals.pop("model", None),
                           software_version=vals.pop("software_version"), serial=vals.pop("serial", None),
                           details=vals)

    def running_config(self) -> str:
        return self.show("running_config")

    def counters(self, port: str | None = None) -> Counters:
        port = port or self.wan_port
        return parse_counters(self.dialect, port, self.show("counters", port=port))

    def shaping_kbps(self, port: str | None = None) -> int | None:
        """The WAN shaper's CIR as the device reports it (None: no shaping)."""
        v = parse(self.show("shaping_show", port=port or self.wan_port), self.dialect.parsers["shaping_show"])
        return int(v["cir_kbps"]) if v.get("cir_kbps") else None

    def set_wan_shaping(self, rate_kbps: int, port: str | None = None) -> ConfigResult:
        """Outbound shaping on the WAN port; read back before returning."""
        r = self._config("shaping_set", port=port or self.wan_port, cir_kbps=int(rate_kbps))
        got = self.shaping_kbps(port)
        if got != int(rate_kbps):
            raise EditRejected(f"shaping reads {got} kbit/s after setting {int(rate_kbps)}", self.name)
        return r

    def clear_wan_shaping(self, port: str | None = None) -> ConfigResult:
        r = self._config("shaping_clear", port=port or self.wan_port)
        if self.shaping_kbps(port) is not None:
            raise EditRejected("shaping still configured after clearing it", self.name)
        return r

    def pfc_priorities(self, port: str | None = None) -> tuple[int, ...]:
        v = parse(self.show("pfc_show", port=port or self.wan_port), self.dialect.parsers["pfc_show"])
        return tuple(int(p) for p in (v.get("priorities") or "").split(",") if p.strip().isdigit())

    def set_pfc(self, priorities: list[int] | tuple[int, ...], port: str | None = None) -> ConfigResult:
        """Lossless (PFC) priorities exactly ``priorities`` on the port."""
        want = sorted({int(p) for p in priorities})
        if any(not 0 <= p <= 7 for p in want):
            raise Unsupported("PFC priority", want, range(8), self.name)
        remove = sorted(set(self.pfc_priorities(port)) - set(want))
        r = self._config("pfc_set", port=port or self.wan_port, priorities=want, remove=remove)
        if list(self.pfc_priorities(port)) != want:
            raise EditRejected(f"PFC reads {self.pfc_priorities(port)} after setting {want}", self.name)
        return r

    def clear_pfc(self, port: str | None = None) -> ConfigResult:
        return self._config("pfc_clear", port=port or self.wan_port)

    def set_ecn(self, queue: int, low_pct: int = 20, high_pct: int = 80, discard_pct: int = 10,
                profile: str = "dcilab-ecn", port: str | None = None) -> ConfigResult:
        """WRED with ECN marking on one queue (RoCE congestion control) of the port."""
        return self._config("ecn_set", port=port or self.wan_port, queue=int(queue), low_pct=int(low_pct),
                            high_pct=int(high_pct), discard_pct=int(discard_pct), profile=profile)

    def clear_ecn(self, queue: int, profile: str = "dcilab-ecn", port: str | None = None) -> ConfigResult:
        return self._config("ecn_clear", port=port or self.wan_port, queue=int(queue), profile=profile)


__all__ = ["ConfigResult", "Counters", "Dialect", "DriverError", "Gateway", "UnsafeCliText", "check_cli_line",
           "cli_errors", "parse", "parse_counters", "render", "shaping_kbps_for_ratio"]
