# Crypto timings under MicroPython: run with the firmware on the path, e.g.
#   MICROPYPATH=firmware .venv/bin/micropython bench/mp_crypto.py
# Prints one JSON line: ecdh_ms, ecdsa_sign_ms, ecdsa_verify_ms (one P-256
# operation each) and gmac_us_per_kb (GMAC over 1 KB of AAD, key setup
# included), each the median of a few runs, plus gmac_us_per_frame for a
# typical 160-byte GBCS frame.
import json
import os
import time

from gbcs import gcm, p256

RUNS = 5


def median_us(fn):
    ts = []
    for _ in range(RUNS):
        t = time.ticks_us()
        fn()
        ts.append(time.ticks_diff(time.ticks_us(), t))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    d1, q1 = p256.generate()
    d2, q2 = p256.generate()
    msg = os.urandom(200)
    sig = p256.sign(d1, msg)
    key = os.urandom(16)
    iv = os.urandom(12)
    kb = os.urandom(1024)
    k4 = os.urandom(4096)
    frame = os.urandom(160)
    out = {
        "ecdh_ms": round(median_us(lambda: p256.ecdh(d1, q2)) / 1000, 2),
        "ecdsa_sign_ms": round(median_us(lambda: p256.sign(d1, msg)) / 1000, 2),
        "ecdsa_verify_ms": round(median_us(lambda: p256.verify(q1, msg, sig)) / 1000, 2),
        "gmac_us_per_kb": median_us(lambda: gcm.gmac(key, iv, kb)),
        "gmac_us_per_frame": median_us(lambda: gcm.gmac(key, iv, frame)),
        "gmac_us_per_kb_4k_input": median_us(lambda: gcm.gmac(key, iv, k4)) // 4,
        "gcm_encrypt_us_per_kb": median_us(lambda: gcm.encrypt(key, iv, kb)),
    }
    print(json.dumps(out))


main()
