# GBCS command/response timings under MicroPython (issue 4 figures):
#   MICROPYPATH=firmware:boards/unix .venv/bin/micropython bench/mp_gbcs.py
# The CHF is built as on the hub (Identity, logs, Device Log with two devices,
# chf.usecases.Chf) on a store in the current directory; an "ACB" key pair is
# generated here and provisioned as the trust anchor (the keystore is not
# needed). Z is computed once beforehand (cached, as in service).
# Prints one JSON line:
#   gbcs_verify_decode_us  parse + MAC verify (+ counter check) + DLMS decode
#                          of a CCS05 Read CHF Device Log command
#   gbcs_response_build_us read of active_devices, A-XDR encode, frame build
#                          and MAC of its response
#   gbcs_handle_us         Chf.handle() end to end (includes persisting the
#                          counter in the store)
# each the median of RUNS runs.
import json
import time

from chf.device_log import DeviceLog
from chf.identity import Identity
from chf.logs import open_logs
from chf import usecase_exec
from chf.usecases import Chf
from gbcs import dlms, dlms_apdu, frame, gcm, kdf, p256
from han.install_code import add_crc
from store import Store

RUNS = 21
ACB = b"\x90\xb3\xd5\x1f\x30\x00\x00\x02"
SUPPLIER = b"\x90\xb3\xd5\x1f\x30\x01\x00\x00"
# CCS05: access-request get ZigBee Network Control 0-0:30.3.0.255 attribute 4
CCS05 = bytes.fromhex("D9200005140001010068" + "00001E0300FF04" + "0100")


def median_us(fn):
    ts = []
    for _ in range(RUNS):
        t = time.ticks_us()
        fn()
        ts.append(time.ticks_diff(time.ticks_us(), t))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    st = Store("data")
    ident = Identity(st)
    acb_d, acb_q = p256.generate()
    ident.set_anchors(
        [
            {"eui": ACB.hex(), "role": "acb", "ka_pub": acb_q.hex()},
            {"eui": SUPPLIER.hex(), "role": "supplier", "ka_pub": None},
        ]
    )
    ev, sec = open_logs(st, 40)
    dl = DeviceLog(st, lambda: 500000000)
    for last in (0xA0, 0xA1):
        dl.add(b"\x00\xdb\x12\x34\x56\x78\x90" + bytes((last,)), 1, add_crc(bytes(range(16))), 90)
    chf = Chf(ident, ev, sec, dl, utc2000=lambda: 500000000)
    parties = chf.parties
    z = p256.ecdh(acb_d, ident.key("chf", "ka_q"))
    me = ident.chf["eui"]
    parties.z(ACB)  # the device's Z, cached as in service

    def command(counter):
        key = kdf.derive_key(z, ACB, 1, counter, me)
        payload = bytearray(CCS05)
        payload[1:5] = (0x20000000 | (counter & 0xFFFFFF)).to_bytes(4, "big")
        return bytes(
            frame.build(
                1,
                counter,
                ACB,
                me,
                0x0004,
                payload,
                supp_party=SUPPLIER,
                supp_counter=counter,
                mac_fn=lambda pre, body, iv: gcm.gmac(key, iv, (pre, body)),
            )
        )

    cmd = command(1000)

    def verify_decode():
        f = frame.parse(cmd)
        parties.authenticate(f, commit=False)
        a = dlms_apdu.parse_apdu(f.payload)
        assert a.tag == dlms.ACCESS_REQUEST and len(a.specs) == 1

    f = frame.parse(cmd)
    a = dlms_apdu.parse_apdu(f.payload)
    buf = bytearray(512)

    def build_response():
        code, value = usecase_exec._get(chf, a.specs[0][1], bytes(a.specs[0][2]), a.specs[0][3])
        payload = dlms_apdu.access_response(a.invoke_id, [value], [(1, code)])
        return parties.protect_response(f, payload, buf)

    assert frame.parse(bytes(build_response())).cra == 2
    counter = [2000]

    def handle():
        counter[0] += 1
        chf.handle(cmds[counter[0] - 2001])

    cmds = [command(2001 + i) for i in range(RUNS)]
    out = {
        "gbcs_verify_decode_us": median_us(verify_decode),
        "gbcs_response_build_us": median_us(build_response),
        "gbcs_handle_us": median_us(handle),
    }
    print(json.dumps(out))


main()
