#!/usr/bin/env python3
"""Write a tiny valid baseline JPEG (W x H grey pixels) for demos and system tests.

usage: tiny_jpeg.py OUT [W H [VARIANT]]
Same construction as tests/visits_fixture.h (pd_fixture_jpeg): SOI, COM(variant), DQT, SOF0,
DHT DC/AC, SOS, all-zero blocks, EOI. A different VARIANT gives different bytes (another photo).
"""
import sys

def jpeg(w=16, h=16, variant=0):
    out = bytearray(b"\xff\xd8")
    out += b"\xff\xfe\x00\x06" + variant.to_bytes(4, "big")
    out += b"\xff\xdb\x00\x43\x00" + bytes([1] * 64)
    out += bytes([0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, h, 0x00, w, 0x01, 0x01, 0x11, 0x00])
    for cls in range(2):
        out += bytes([0xFF, 0xC4, 0x00, 0x14, cls << 4, 1] + [0] * 15 + [0])
    out += bytes([0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00])
    bits = 2 * ((w + 7) // 8) * ((h + 7) // 8)
    for b in range((bits + 7) // 8):
        used = min(bits - b * 8, 8)
        out.append(0xFF >> used)
    out += b"\xff\xd9"
    return bytes(out)

if __name__ == "__main__":
    a = sys.argv[1:]
    w, h = (int(a[1]), int(a[2])) if len(a) >= 3 else (16, 16)
    v = int(a[3]) if len(a) >= 4 else 0
    open(a[0], "wb").write(jpeg(w, h, v))
