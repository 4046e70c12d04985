"""TCP resets the line sends when the modelled RC QP goes to error, as pure functions on frames.

Why: when retries run out, NCCL aborts the communicator and the job dies.  The emulated nodes talk
TCP, which would simply keep retransmitting; so the line answers the cross-site flows with a RST
each, in the sender's own sequence space, and gloo's reads fail with ECONNRESET the way NCCL's
fail with a remote error.  A RST is only accepted with the receiver's exact next sequence number
(RFC 5961): the line takes it from the ACK field of the last segment the endpoint sent, and any
later segment (a retransmission, a challenge ACK) is answered again with its own ACK field.
"""

from __future__ import annotations

import struct

ETH_HLEN = 14
ETH_P_IP = b"\x08\x00"
IPPROTO_TCP = 6
TCP_RST, TCP_ACK = 0x04, 0x10


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def flow_key(frame: bytes) -> bytes | None:
    """The sender's (src ip, dst ip, src port, dst port) of an IPv4 TCP frame, or None."""
    if len(frame) < ETH_HLEN + 20 or frame[12:14] != ETH_P_IP or frame[23] != IPPROTO_TCP:
        return None
    ihl = (frame[14] & 0x0F) * 4
    t = ETH_HLEN + ihl
    if ihl < 20 or len(frame) < t + 20:
        return None
    return frame[26:34] + frame[t:t + 4]


def rst_to_sender(frame: bytes) -> bytes | None:
    """A RST|ACK from the frame's receiver back to its sender: Ethernet and IP addresses and
    ports swapped, seq = the frame's ACK field (the sender's next expected byte), ack = the
    frame's seq + its payload length.  None if the frame is not IPv4 TCP or carries no ACK."""
    if flow_key(frame) is None:
        return None
    ihl = (frame[14] & 0x0F) * 4
    t = ETH_HLEN + ihl
    total = struct.unpack("!H", frame[16:18])[0]
    seq, ack = struct.unpack("!II", frame[t + 4:t + 12])
    offset = (frame[t + 12] >> 4) * 4
    flags = frame[t + 13]
    if not flags & TCP_ACK:
        return None  # a SYN: nothing to reset yet
    payload = max(0, total - ihl - offset) + (1 if flags & 0x03 else 0)  # SYN/FIN take one
    src, dst = frame[26:30], frame[30:34]
    sport, dport = frame[t:t + 2], frame[t + 2:t + 4]
    tcp = bytearray(dport + sport + struct.pack("!IIBBHHH", ack, (seq + payload) & 0xFFFFFFFF,
                                                5 << 4, TCP_RST | TCP_ACK, 0, 0, 0))
    pseudo = dst + src + struct.pack("!BBH", 0, IPPROTO_TCP, len(tcp))
    struct.pack_into("!H", tcp, 16, _checksum(pseudo + bytes(tcp)))
    ip = bytearray(struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, IPPROTO_TCP, 0) + dst + src)
    struct.pack_into("!H", ip, 10, _checksum(bytes(ip)))
    return frame[6:12] + frame[0:6] + ETH_P_IP + bytes(ip) + bytes(tcp)
