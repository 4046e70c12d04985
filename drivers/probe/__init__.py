"""Probe traffic that measures service disruption like a transport test set (EXFO/Spirent).

scapy builds each stream's frame once (UDP, or RoCEv2 with a BTH whose PSN is the sequence
number); a raw AF_PACKET sender patches sequence number and transmit timestamps into the
prebuilt bytes and paces them; a raw AF_PACKET receiver in another process records
(seq, tx time, rx time) and ``analyze`` turns that into the report: service disruption time by
the loss method and by the gap method (with where the gap happened), lost / duplicate /
out-of-order counts, and one-way delay before and after the largest gap.

CLI (JSON on stdout; run each side in its own process, e.g. on the GPU nodes of both sites)::

    python -m drivers.probe recv --iface IF [--kind udp|rocev2] [--port P] --duration S [--idle S]
    python -m drivers.probe send --iface IF --dst-ip IP [--dst-mac MAC] --rate-pps 10000 --duration S
    python -m drivers.probe analyze RECORDS.bin [--rate-pps R]

Library: ``FrameSpec``/``build_template`` (frames), ``Sender``/``Receiver`` (wire),
``analyze``/``Records``/``ProbeReport`` (analysis). Only ``frames`` imports scapy.
"""

from .analysis import DelayStats, Disruptions, Gap, ProbeReport, Records, analyze
from .frames import FrameSpec, FrameTemplate, build_packet, build_template, min_size, parse_frame
from .wire import ProbeError, Receiver, RecvStats, Sender, SendResult, resolve_next_hop

__all__ = ["DelayStats", "Disruptions", "FrameSpec", "FrameTemplate", "Gap", "ProbeError", "ProbeReport", "Receiver",
           "Records", "RecvStats", "SendResult", "Sender", "analyze", "build_packet", "build_template", "min_size",
           "parse_frame", "resolve_next_hop"]
