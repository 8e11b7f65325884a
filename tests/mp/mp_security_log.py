# The CHF security log cannot be flushed silently (issue 16): repeats of an
# entry collapse into one entry with a count, entries the FIFO drops are
# counted (persisted), and a flood of malformed input raises 0x8F60 once per
# quiet period. Under micropython on LittleFS2; remounts prove what reached
# flash.
from flashfs import ROOT
from flashfs import fresh as _fresh_fs
from flashfs import remount as _remount_fs
import codes
from chf.logs import EventLog, MalformedWatch, open_logs
from codes import EV_MALFORMED, EV_MALFORMED_FLOOD, EV_UNKNOWN_JOIN, EV_NETWORK_KEY_ROTATED
from store import Store

HEAP = "256k"
JOINS = [bytes([0xA0, i]) * 4 for i in range(3)]


def fresh():
    _fresh_fs(64)
    return Store(ROOT + "/data")


def remount():
    _remount_fs()
    return Store(ROOT + "/data")


def test_junk_flood_keeps_the_older_evidence():
    """200 malformed frames after three join refusals: one entry with count
    200, the refusals still there, nothing lost; few flash writes."""
    st = fresh()
    sec = EventLog(st, "security", 40)
    for i, eui in enumerate(JOINS):
        sec.append(EV_UNKNOWN_JOIN, eui, 100 + i)
    w0 = st.stats["journal_appends"]
    for i in range(200):
        sec.append(EV_MALFORMED, b"", 200 + i // 10)  # 10 a second
    rows = sec.rows()
    assert [r[1:] for r in rows] == [(EV_UNKNOWN_JOIN, e, 1) for e in JOINS] + [(EV_MALFORMED, b"", 200)]
    assert rows[-1][0] == 200 and sec.lost == 0 and sum(r[3] for r in sec.rows()) == 203
    assert st.stats["journal_appends"] - w0 <= 10, st.stats["journal_appends"] - w0  # 1 + one per doubling
    sec.flush()
    st.close()
    st = remount()
    again = EventLog(st, "security", 40)
    assert again.rows() == rows and sum(r[3] for r in again.rows()) == 203


def test_count_on_flash_is_at_least_half_before_a_flush():
    st = fresh()
    sec = EventLog(st, "security", 40)
    for i in range(100):
        sec.append(EV_MALFORMED, b"", 500)
    st.close()
    st = remount()  # a power cut: the count was last written at 64
    again = EventLog(st, "security", 40)
    assert again.rows() == [(500, EV_MALFORMED, b"", 64)], again.rows()


def test_repeats_collapse_across_other_entries_and_window_ends():
    st = fresh()
    sec = EventLog(st, "security", 40, window_s=60)
    for i in range(10):
        sec.append(EV_MALFORMED, b"", 1000 + i)
        sec.append(EV_UNKNOWN_JOIN, JOINS[i % 2], 1000 + i)  # two EUIs: two entries
    got = [(r[1], r[2], r[3]) for r in sec.rows()]
    assert sorted(got) == sorted([(EV_MALFORMED, b"", 10), (EV_UNKNOWN_JOIN, JOINS[0], 5),
                                  (EV_UNKNOWN_JOIN, JOINS[1], 5)]), got
    sec.append(EV_MALFORMED, b"", 1009 + 61)  # after the window: a new entry
    assert [(r[0], r[3]) for r in sec.rows() if r[1] == EV_MALFORMED] == [(1000, 10), (1070, 1)]
    st.close()
    st = remount()
    assert [(r[0], r[3]) for r in EventLog(st, "security", 40).rows() if r[1] == EV_MALFORMED] == [(1000, 10), (1070, 1)]


def test_lost_entries_are_counted_and_persisted():
    st = fresh()
    ev, sec = open_logs(st, capacity=5)
    for i in range(8):
        sec.append(EV_NETWORK_KEY_ROTATED, bytes([i]), 10 + i)
    assert len(sec) == 5 and sec.lost == 3 and ev.lost == 0
    assert [r[2] for r in sec.rows()] == [bytes([i]) for i in range(3, 8)]
    st.close()
    st = remount()
    ev, sec = open_logs(st, capacity=5)
    assert sec.lost == 3 and ev.lost == 0
    sec.append(EV_NETWORK_KEY_ROTATED, b"\x99", 30)
    assert sec.lost == 4


def test_malformed_flood_raises_0x8f60_once_per_quiet_period():
    st = fresh()
    sent = []
    watch = MalformedWatch(threshold=20, window_s=60, quiet_s=3600)
    watch.send = sent.append
    _, sec = open_logs(st, watch=watch)
    for i in range(19):
        sec.append(EV_MALFORMED, b"", 100)
    assert sent == [] and all(r[1] != EV_MALFORMED_FLOOD for r in sec.rows())
    sec.append(EV_MALFORMED, b"", 101)
    assert sent == [EV_MALFORMED_FLOOD]
    flood = [r for r in sec.rows() if r[1] == EV_MALFORMED_FLOOD]
    assert flood == [(101, EV_MALFORMED_FLOOD, b"\x00\x14", 1)], flood
    for i in range(100):  # more within the quiet period: counted, no second alert
        sec.append(EV_MALFORMED, b"", 200 + i)
    assert sent == [EV_MALFORMED_FLOOD] and watch.raised == 1
    for i in range(20):  # an hour later: again
        sec.append(EV_MALFORMED, b"", 101 + 3600 + i)
    assert sent == [EV_MALFORMED_FLOOD] * 2
    # slow trickles stay under the threshold; a failing send is counted, not raised
    watch2 = MalformedWatch(threshold=5, window_s=60)

    def broken(code):
        raise OSError("no ACB")

    watch2.send = broken
    _, sec2 = open_logs(fresh(), watch=watch2)
    for i in range(10):
        sec2.append(EV_MALFORMED, b"", 1000 + i * 61)
    assert watch2.raised == 0
    for i in range(5):
        sec2.append(EV_MALFORMED, b"", 5000)
    assert watch2.raised == 1 and watch2.send_errors == 1


def test_the_watch_counts_the_six_command_faults():
    # the watch counts codes' six command faults, and nothing else
    class _Log:
        n = 0

        def append(self, code, data, t):
            self.n += 1

    lg = _Log()
    watch = MalformedWatch(threshold=1, window_s=60, quiet_s=0)
    faults = (codes.EV_MALFORMED, codes.EV_NOT_PROTECTED, codes.EV_BAD_SIGNATURE, codes.EV_UNKNOWN_ORIGINATOR,
              codes.EV_AUTH_FAILED, codes.EV_UNKNOWN_RECIPIENT)
    for i, c in enumerate(faults):
        watch.note(lg, c, 1000 + i)
        assert lg.n == i + 1, hex(c)
    for c in (codes.EV_MALFORMED_FLOOD, codes.EV_NETWORK_KEY_ROTATED, 0x8F1F, 0):
        watch.note(lg, c, 2000)
    assert lg.n == len(faults) and watch.raised == len(faults)


def test_the_two_logs_hold_little():
    # the event and security logs as the hub holds them (open_logs): their
    # ring logs and little else; the "log_lost" KV store is asked for when an
    # entry is lost, not held (main: 768 bytes on a 32-bit board, 2,016 on
    # a 64-bit one, a KV object each; now 704 and 1,856). The least of three
    # openings, each on a fresh store: a first reading moved with the
    # checkout's path (1,888-2,080 on the 64-bit port), as names interned on
    # the way filled the qstr pool to a different point
    import gc
    import sys

    word = 8 if sys.maxsize > 2**32 else 4
    readings = []
    for _ in range(3):
        ev = sec = None
        st = fresh()
        st.kv("log_lost", keep=False)  # the shared parts made first: not the logs'
        gc.collect()
        before = gc.mem_alloc()
        ev, sec = open_logs(st, 40, watch=MalformedWatch())
        gc.collect()
        readings.append(gc.mem_alloc() - before)
        assert ev.lost == 0 and sec.lost == 0
    used = min(readings)
    print("two logs: %r bytes, %d words" % (readings, used // word))
    assert used <= (736 if word == 4 else 1920), readings
