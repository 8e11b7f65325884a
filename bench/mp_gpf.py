# GPF timings under MicroPython (issue 5 figure gpf_read_ms):
#   MICROPYPATH=firmware:boards/unix .venv/bin/micropython bench/mp_gpf.py
# The GPF is built as on the hub (Identity, Mirror, gpf.function.Gpf) on a
# store in the current directory; "ACB" and "supplier" key pairs are generated
# here and provisioned as the GPF's trust anchors. The mirror is filled by
# ZCL attribute reports from the GSME. Z values are computed once beforehand
# (cached, as in service). Prints one JSON line:
#   gpf_read_ms           Gpf.handle() of a GCS13a Read GSME Consumption
#                         Register: parse, MAC check, counter persisted, read
#                         from the mirror, GBZ component encrypted for the
#                         supplier, response MAC'd (the hub's share of the
#                         head-end -> GPF -> head-end exchange)
#   gpf_mirror_report_ms  one Metering attribute report into the mirror
#                         (decode, store, one KV commit)
# each the median of RUNS runs.
import asyncio
import json
import time

from chf.identity import Identity
from gbcs import frame, gcm, kdf, p256
from gpf.function import Gpf
from gpf.mirror import Mirror
from han import peer, zcl, zcl_clusters
from store import Store

RUNS = 21
ACB = b"\x90\xb3\xd5\x1f\x30\x00\x00\x02"
SUPPLIER = b"\x90\xb3\xd5\x1f\x30\x01\x00\x00"
GSME = "00db1234567890a1"
T = 473385600
# GCS13a: Metering Read Attributes divisor, multiplier, unit, summation
GCS13A = bytes.fromhex("010901" + "010702000B" + "000000" + "0203010300030000")


def median_ms(fn):
    ts = []
    for _ in range(RUNS):
        t = time.ticks_us()
        fn()
        ts.append(time.ticks_diff(time.ticks_us(), t))
    ts.sort()
    return round(ts[len(ts) // 2] / 1000, 3)


def main():
    st = Store("data")
    ident = Identity(st)
    acb_d, acb_q = p256.generate()
    _sd, sup_q = p256.generate()
    ident.set_anchors(
        [
            {"eui": ACB.hex(), "role": "acb", "ka_pub": acb_q.hex()},
            {"eui": SUPPLIER.hex(), "role": "supplier", "ka_pub": sup_q.hex()},
        ],
        "gpf",
    )

    def now():
        return T, True

    mirror = Mirror(st, now)
    gpf = Gpf(ident, st, mirror, now)
    parties = gpf.parties
    z = p256.ecdh(acb_d, ident.key("gpf", "ka_q"))
    parties.z(ACB)
    parties.z(SUPPLIER)
    me = ident.gpf["eui"]

    def zcl_in(cluster, fr):
        h, off = zcl.parse_header(fr)
        return asyncio.run(mirror.zcl_server(GSME, 1, h, fr[off:], cluster))

    zcl_in(0x0702, bytes((0x09, 1, zcl_clusters.MET_REQUEST_MIRROR)))
    recs = [(0x0302, zcl.T_UINT24, 1000), (0x0301, zcl.T_UINT24, 1), (0x0300, zcl.T_ENUM8, 1)]
    n = [12345]

    def report():
        n[0] += 1
        body = zcl.encode_attribute_records(recs + [(0x0000, peer.T_UINT48, n[0])])
        zcl_in(0x0702, bytes((0x18, 2, zcl.REPORT_ATTRIBUTES)) + body)

    def command(counter):
        key = kdf.derive_key(z, SUPPLIER, 1, counter, me)
        return bytes(
            frame.build(1, counter, SUPPLIER, me, 0x0074, GCS13A, mac_fn=lambda pre, body, iv: gcm.gmac(key, iv, (pre, body)))
        )

    report_ms = median_ms(report)
    cmds = [command(3001 + i) for i in range(RUNS)]
    it = iter(cmds)
    resp, _ = gpf.handle(command(3000))
    assert frame.parse(resp).cra == 2
    read_ms = median_ms(lambda: gpf.handle(next(it)))
    print(json.dumps({"gpf_read_ms": read_ms, "gpf_mirror_report_ms": report_ms}))


main()
