"""Huawei VRP (CloudEngine / NetEngine style) CLI: netmiko's 'huawei' driver, the commands the
gateway driver needs, and the regexes that read their output.  Data only."""

from __future__ import annotations

from ..base import Dialect

DIALECT = Dialect(
    name="huawei_vrp",
    netmiko_device_type="huawei",
    wan_port="400GE1/0/1",                 # toward the OTN terminal's 400G client ports (the trial's 2 x 400G)
    enter_config="system-view",
    exit_config="return",
    config_prompt=r"\][^\S\n]*$",          # [GW-A], [GW-A-400GE1/0/1], [GW-A-dcb-pfc-default]
    exec_prompt=r">[^\S\n]*$",             # <GW-A>
    error_re=r"^\s*Error:.*$",
    paging_off="screen-length 0 temporary",
    logout="quit",                         # in the user view: ends the session
    commands={
        "running_config": ["display current-configuration"],
        "counters": ["display interface {port}"],
        "shaping_show": ["display qos lr outbound interface {port}"],
        "pfc_show": ["display dcb pfc interface {port}"],
        "version": ["display version"],
        "serial": ["display esn"],
    },
    config={
        "shaping_set": ["interface {port}", "qos lr outbound cir {cir_kbps}"],
        "shaping_clear": ["interface {port}", "undo qos lr outbound"],
        # '@name line' repeats the line for each item of the list parameter 'name' ({item})
        "pfc_set": ["dcb pfc", "@remove undo priority {item}", "@priorities priority {item}", "quit",
                    "interface {port}", "dcb pfc enable mode manual"],
        "pfc_clear": ["interface {port}", "undo dcb pfc enable", "quit", "undo dcb pfc"],
        "ecn_set": ["drop-profile {profile}",
                    "color green low-limit {low_pct} high-limit {high_pct} discard-percentage {discard_pct}",
                    "quit", "interface {port}", "qos queue {queue} wred {profile}", "qos queue {queue} ecn"],
        "ecn_clear": ["interface {port}", "undo qos queue {queue} ecn", "undo qos queue {queue} wred", "quit",
                      "undo drop-profile {profile}"],
    },
    parsers={
        "counters": {
            "state": r"current state\s*:\s*(\S+)",
            "rx_packets": r"Input:\s*(\d+) packets",
            "rx_bytes": r"Input:\s*\d+ packets, (\d+) bytes",
            "tx_packets": r"Output:\s*(\d+) packets",
            "tx_bytes": r"Output:\s*\d+ packets, (\d+) bytes",
            "rx_errors": r"Input:[\s\S]*?Total Error:\s*(\d+)",
            "tx_errors": r"Output:[\s\S]*?Total Error:\s*(\d+)",
            "rx_discards": r"Input:[\s\S]*?Discard:\s*(\d+)",
            "tx_discards": r"Output:[\s\S]*?Discard:\s*(\d+)",
            "in_rate_bps": r"input rate:?\s*(\d+) bits/sec",
            "out_rate_bps": r"output rate:?\s*(\d+) bits/sec",
            "shaping_kbps": r"Outbound rate limit: CIR (\d+)",
        },
        "shaping_show": {"cir_kbps": r"CIR\(kbps\):\s*(\d+)"},
        "pfc_show": {"priorities": r"^\S+\s+\S+\s+enable\s+([\d,]+)"},
        # "VRP (R) software, Version 8.180 (CE6857EI V200R005C10SPC800)"
        # "HUAWEI CE6857-48S6CQ-EI uptime is 2 days, 1 hour, 41 minutes"
        "version": {
            "vendor": r"^(\S+) \S+(?: .*)? uptime is",
            "model": r"^\S+ (\S+)(?: .*)? uptime is",
            "software_version": r"VRP \(R\) software, Version \S+ \(\S+ (\S+)\)",
            "vrp_version": r"VRP \(R\) software, Version (\S+)",
            "uptime": r" uptime is (.+?)\s*$",
        },
        "serial": {"serial": r"^ESN of [^:]+:\s*(\S+)"},   # "ESN of slot 1: 2102351931P0J1000123"
    },
)
