"""Probe frames: scapy builds one template per stream; the hot path only patches bytes.

Layout (IPv4 only)::

    udp:    Ether / IPv4 / UDP(dport)       / probe header / padding
    rocev2: Ether / IPv4 / UDP(dport 4791)  / BTH(RC SEND_ONLY, dqpn, psn) / probe header / padding / ICRC

Probe header (network byte order, 32 bytes, ``HEADER``)::

    magic "DCLP" | stream u32 | seq u64 | tx CLOCK_MONOTONIC ns u64 | tx CLOCK_REALTIME ns u64

Per frame the sender patches seq and the two timestamps (and for RoCEv2 the BTH PSN, which is
``seq mod 2**24``; the 64-bit seq in the header is the one the receiver uses, so PSN wrap-around
never confuses it).

Checksums, decided:
- IPv4 header checksum: computed once by scapy; nothing in the IP header changes per frame.
- UDP checksum: 0 ("no checksum", legal for IPv4, RFC 768), for both kinds; RoCEv2 (IBTA
  Annex A17) requires 0 anyway. So patching the payload never makes it stale.
- RoCEv2 ICRC: kept *valid*. It is a CRC32 over a masked pseudo-header (8 x 0xff, IPv4 with
  TOS/TTL/checksum masked, UDP with checksum masked, BTH with the FECN/BECN/resv byte masked)
  plus BTH and payload. Everything up to the BTH's PSN word is constant per template, so its CRC
  is computed once and each frame costs one ``zlib.crc32`` over PSN word + payload (~0.2 us).
  The tests check it against scapy's ``BTH.compute_icrc``. Receivers never depend on the ICRC
  (a switch that rewrites DSCP/ECN is covered by the masks anyway).

Frame size (``size``) follows test-set practice: the Ethernet frame *including* the 4-byte FCS
(the NIC adds the FCS), so ``size=64`` is the classic minimum; the bytes written are size - 4.
The smallest possible sizes are ``min_size(kind)``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

MAGIC = b"DCLP"
HEADER = struct.Struct("!4sIQQQ")  # magic, stream, seq, tx_mono_ns, tx_real_ns
PATCH = struct.Struct("!QQQ")  # seq, tx_mono_ns, tx_real_ns (at header offset + 8)
HEADER_LEN = HEADER.size  # 32
ETH_LEN, IP_LEN, UDP_LEN, BTH_LEN, ICRC_LEN, FCS_LEN = 14, 20, 8, 12, 4, 4
ROCEV2_PORT = 4791
UDP_PORT = 7100
RC_SEND_ONLY = 0x04
PSN_MOD = 1 << 24
KINDS = ("udp", "rocev2")


def min_size(kind: str) -> int:
    """Smallest frame size (incl. FCS) that carries the probe header."""
    extra = BTH_LEN + ICRC_LEN if kind == "rocev2" else 0
    return max(64, ETH_LEN + IP_LEN + UDP_LEN + extra + HEADER_LEN + FCS_LEN)


def default_port(kind: str) -> int:
    return ROCEV2_PORT if kind == "rocev2" else UDP_PORT


@dataclass(frozen=True)
class FrameSpec:
    """What one probe stream looks like on the wire."""

    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    kind: str = "udp"
    size: int = 128  # Ethernet frame incl. FCS
    dport: int | None = None  # default: 4791 (rocev2) / 7100 (udp)
    sport: int = 49152
    stream: int = 1
    dscp: int = 0
    ecn: int = 0
    ttl: int = 64
    dqpn: int = 0xD1C1  # RoCEv2 destination QP

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        lo = min_size(self.kind)
        if not lo <= self.size <= 9018 + FCS_LEN:
            raise ValueError(f"size must be in [{lo}, 9022] bytes (Ethernet frame incl. FCS) for {self.kind}, "
                             f"got {self.size}")
        if not 0 <= self.dscp < 64 or not 0 <= self.ecn < 4:
            raise ValueError(f"dscp must be 0..63 and ecn 0..3, got {self.dscp}, {self.ecn}")
        if not 0 <= self.stream < 1 << 32:
            raise ValueError(f"stream must fit 32 bits, got {self.stream}")

    @property
    def port(self) -> int:
        return self.dport if self.dport is not None else default_port(self.kind)


@dataclass
class FrameTemplate:
    """A prebuilt frame and where to patch it; ``patch`` fills seq and timestamps in place."""

    spec: FrameSpec
    frame: bytearray  # size - 4 bytes (no FCS)
    header_off: int  # offset of the probe header
    psn_off: int | None = None  # offset of the BTH word [ackreq|resv7|psn24]
    _psn_hi: int = 0  # ackreq/resv7 byte, kept as built
    _crc_prefix: int = 0  # CRC32 state over the masked pseudo-header up to the PSN word
    _patch_off: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._patch_off = self.header_off + 8

    def patch(self, seq: int, tx_mono_ns: int, tx_real_ns: int) -> bytearray:
        """Write seq/timestamps (and PSN + ICRC for RoCEv2) into ``frame``; returns it."""
        f = self.frame
        PATCH.pack_into(f, self._patch_off, seq, tx_mono_ns, tx_real_ns)
        if self.psn_off is not None:
            struct.pack_into("!I", f, self.psn_off, self._psn_hi | (seq & 0xFFFFFF))
            crc = zlib.crc32(memoryview(f)[self.psn_off:-ICRC_LEN], self._crc_prefix)
            struct.pack_into("<I", f, len(f) - ICRC_LEN, crc)  # scapy: pack("!I", crc)[::-1]
        return f

    def make(self, seq: int, tx_mono_ns: int = 0, tx_real_ns: int = 0) -> bytes:
        """A copy of the frame for ``seq`` (tests, offline use)."""
        return bytes(self.patch(seq, tx_mono_ns, tx_real_ns))


def build_packet(spec: FrameSpec, seq: int = 0, tx_mono_ns: int = 0, tx_real_ns: int = 0):
    """The scapy packet for one probe (scapy computes IP checksum and, for RoCEv2, the ICRC)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    hdr = HEADER.pack(MAGIC, spec.stream, seq, tx_mono_ns, tx_real_ns)
    base = ETH_LEN + IP_LEN + UDP_LEN + (BTH_LEN + ICRC_LEN if spec.kind == "rocev2" else 0)
    pad = bytes(spec.size - FCS_LEN - base - HEADER_LEN)
    l3 = (Ether(src=spec.src_mac, dst=spec.dst_mac)
          / IP(src=spec.src_ip, dst=spec.dst_ip, tos=(spec.dscp << 2) | spec.ecn, ttl=spec.ttl, id=0, flags="DF")
          / UDP(sport=spec.sport, dport=spec.port, chksum=0))
    if spec.kind == "udp":
        return l3 / Raw(hdr + pad)
    from scapy.contrib.roce import BTH

    return l3 / BTH(opcode=RC_SEND_ONLY, dqpn=spec.dqpn, psn=seq % PSN_MOD) / Raw(hdr + pad)


def build_template(spec: FrameSpec) -> FrameTemplate:
    """Build the stream's frame once with scapy and locate the fields the sender patches."""
    raw = bytearray(bytes(build_packet(spec)))
    if len(raw) != spec.size - FCS_LEN:
        raise AssertionError(f"built {len(raw)} bytes, expected {spec.size - FCS_LEN}")
    l4 = ETH_LEN + IP_LEN + UDP_LEN
    if spec.kind == "udp":
        return FrameTemplate(spec, raw, header_off=l4)
    bth = l4
    psn_off = bth + 8
    # The masked pseudo-header up to the PSN word (as scapy's BTH.compute_icrc masks it).
    pre = bytearray(raw[ETH_LEN:psn_off])
    ip = 0
    pre[ip + 1] = 0xFF  # TOS (DSCP/ECN)
    pre[ip + 8] = 0xFF  # TTL
    pre[ip + 10:ip + 12] = b"\xff\xff"  # header checksum
    pre[IP_LEN + 6:IP_LEN + 8] = b"\xff\xff"  # UDP checksum
    pre[IP_LEN + UDP_LEN + 4] = 0xFF  # BTH FECN/BECN/resv6
    crc_prefix = zlib.crc32(b"\xff" * 8 + bytes(pre))
    tpl = FrameTemplate(spec, raw, header_off=bth + BTH_LEN, psn_off=psn_off, _psn_hi=raw[psn_off] << 24,
                        _crc_prefix=crc_prefix)
    tpl.patch(0, 0, 0)
    return tpl


@dataclass(frozen=True)
class Parsed:
    """The probe fields of one received frame."""

    stream: int
    seq: int
    tx_mono_ns: int
    tx_real_ns: int
    psn: int | None = None


def parse_frame(frame: bytes | bytearray | memoryview, kind: str = "udp", port: int | None = None) -> Parsed | None:
    """Probe fields of an Ethernet frame, or None if it is not a probe (pure Python, no scapy).

    Checks: IPv4, UDP, not a fragment, UDP dport, for RoCEv2 a BTH (dqpn not checked), the magic."""
    port = default_port(kind) if port is None else port
    n = len(frame)
    if n < ETH_LEN + IP_LEN + UDP_LEN + HEADER_LEN or frame[12] != 0x08 or frame[13] != 0x00 \
            or frame[23] != 17 or (frame[20] & 0x1F) or frame[21]:
        return None
    l4 = ETH_LEN + (frame[14] & 0x0F) * 4
    if (frame[l4 + 2] << 8 | frame[l4 + 3]) != port:
        return None
    off = l4 + UDP_LEN
    psn = None
    if kind == "rocev2":
        if n < off + BTH_LEN + HEADER_LEN:
            return None
        psn = struct.unpack_from("!I", frame, off + 8)[0] & 0xFFFFFF
        off += BTH_LEN
    magic, stream, seq, mono, real = HEADER.unpack_from(frame, off)
    if magic != MAGIC:
        return None
    return Parsed(stream, seq, mono, real, psn)
