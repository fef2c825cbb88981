"""TFRecord framing (what TensorBoard event files are made of), without TensorFlow.

Each record is: uint64 length, masked crc32c(length), data, masked crc32c(data).
`parse_records` fails on a torn record, so a half-uploaded event file is caught.
"""

from __future__ import annotations

import struct


def _table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        out.append(c)
    return out


_T = _table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", _masked(header)) + data + struct.pack("<I", _masked(data))


def parse_records(blob: bytes) -> list[bytes]:
    """The records of an event file; ValueError if any record is cut or corrupt."""
    out, pos = [], 0
    while pos < len(blob):
        if pos + 12 > len(blob):
            raise ValueError(f"torn record header at byte {pos}")
        header = blob[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
        if hcrc != _masked(header):
            raise ValueError(f"bad length crc at byte {pos}")
        end = pos + 12 + length + 4
        if end > len(blob):
            raise ValueError(f"torn record at byte {pos}")
        data = blob[pos + 12:pos + 12 + length]
        (dcrc,) = struct.unpack("<I", blob[end - 4:end])
        if dcrc != _masked(data):
            raise ValueError(f"bad data crc at byte {pos}")
        out.append(data)
        pos = end
    return out
