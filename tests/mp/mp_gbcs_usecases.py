# chf.usecases (its use cases run by chf.usecase_exec) under MicroPython: the CCS04/CCS05/CCS06 active_devices row
# (DLMS class 104 attribute 4) -- status bit 0 for a joined device, the HAN
# statistics, the application/stack versions the HAN coordinator read from
# the device's Basic cluster (Chf.versions), 0 when not known -- and the
# pieces the CHF shares with the GPF (gbcs.usecase_base).
from binascii import unhexlify

from chf import usecase_exec, usecases
from chf.device_log import DeviceLog
from chf.identity import Identity
from chf.logs import open_logs
from chf.usecases import Chf
from gbcs import dlms, usecase_base
from han.install_code import add_crc
from store import Store

HEAP = "256k"
T = 500000000
ESME = "00db1234567890a0"
GSME = "00db1234567890a1"


def _setup():
    st = Store("data")
    ident = Identity(st)
    ev, sec = open_logs(st, 40)
    dl = DeviceLog(st, lambda: T)
    chf = Chf(ident, ev, sec, dl, utc2000=lambda: T)
    for eui, typ in ((ESME, 1), (GSME, 0)):
        assert dl.add(unhexlify(eui), typ, add_crc(b"0123456789ABCDEF"), 3600)[0] == 0
    return chf, dl


def _rows(chf):
    code, value = usecase_exec._get(chf, 104, usecase_exec.OBIS_DEVICE_LOG, 4)
    assert code == usecases.OK and value[0] == dlms.ARRAY
    out = {}
    for row in value[1]:
        assert row[0] == dlms.STRUCTURE and len(row[1]) == 14
        out[bytes(row[1][0][1]).hex()] = row[1]
    return out


def test_active_devices_versions_from_the_han_and_status_bit():
    chf, dl = _setup()
    dl.record_join(unhexlify(ESME), 0x1234)
    dl.record_rx(unhexlify(ESME), -40, 200, T - 60)
    asked = []

    def versions(eui_hex):
        asked.append(eui_hex.lower())
        return {ESME: (0x23, 0x11), GSME: (None, 7)}.get(eui_hex.lower())

    rows = _rows(chf)
    # no version source: 0 (not known), never a made-up value
    assert [rows[ESME][12][1], rows[ESME][13][1]] == [0, 0]
    chf.versions = versions
    rows = _rows(chf)
    assert sorted(asked) == [ESME, GSME]
    assert rows[ESME][12] == (dlms.UNSIGNED, 0x23) and rows[ESME][13] == (dlms.UNSIGNED, 0x11)
    assert rows[GSME][12] == (dlms.UNSIGNED, 0) and rows[GSME][13] == (dlms.UNSIGNED, 7)
    # status: bit 0 (MSB) = joined; the GSME has not joined
    assert rows[ESME][1] == (dlms.BIT_STRING, (8, b"\x80"))
    assert rows[GSME][1] == (dlms.BIT_STRING, (8, b"\x00"))
    # the statistics of the one reception; a device never heard: 0s and no time
    assert [rows[ESME][i][1] for i in (2, 3, 4, 5, 6, 7)] == [-40, -40, -40, 200, 200, 200]
    assert rows[GSME][8][1] == b"\xff" * 12 and rows[GSME][2][1] == 0


def test_chf_uses_the_shared_use_case_pieces():
    # one copy: the CHF's names are usecase_base's (the use cases' run,
    # chf.usecase_exec, has the checks; the date-time is gbcs.dlms's, which
    # chf.usecases keeps at boot without usecase_base)
    for name in ("accept", "date_time", "UseCaseError"):
        assert getattr(usecase_exec, name) is getattr(usecase_base, name), name
    assert usecases.date_time is usecase_base.date_time is dlms.date_time
    for name in ("EV_PAYLOAD_MISMATCH", "EV_UNSUPPORTED"):
        assert getattr(usecase_exec, name) == getattr(usecase_base, name), name
    # the CHF's date-time: weekday set, status not specified (RTDS CCS07/CS14)
    assert usecases.date_time(473385600) == bytes.fromhex("07df010104000000008000ff")


def test_device_log_changes_between_commands_are_not_held():
    # The CHF notes the Device Log's changes during a command (CS14's
    # duplicate alert) and nothing outside one: 24 changes (12 devices
    # added and removed) with no CHF command in between left 24 tuples and
    # their list on the CHF until the next command (1,760 bytes on the
    # 64-bit port, more with each change). Measured against the same
    # changes to a Device Log with no CHF (its journal's own growth); the
    # bound in words (8, 4)
    import gc
    import sys

    W = 8 if sys.maxsize > 2**31 else 4
    euis = [unhexlify("00db12345678a1%02x" % i) for i in range(12)]

    def grown(dl):
        dl.add(euis[0], 1, add_crc(b"0123456789ABCDEF"), 3600)  # the journal's tables warmed up
        dl.remove(euis[0])
        gc.collect()
        a = gc.mem_alloc()
        for e in euis:
            assert dl.add(e, 1, add_crc(b"0123456789ABCDEF"), 3600)[0] == 0
            dl.remove(e)
        gc.collect()
        return gc.mem_alloc() - a

    alone = grown(DeviceLog(Store("data_alone"), lambda: T))
    chf, dl = _setup()
    extra = grown(dl) - alone
    print("chf: %d bytes after 24 Device Log changes (the Device Log's own %d)" % (extra, alone))
    assert extra <= 8 * W, extra
    assert chf._cmd is None
