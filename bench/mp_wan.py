# The WAN outbox's flash cost (firmware/wan/outbox.py on the store's Journal
# and the transaction-log RingLog, LittleFS2 on the emulated flash):
#
#   micropython bench/mp_wan.py FLASH
#
# prints "FIGURES <json>": block writes and erases per message that is queued
# (Outbox.add) and acknowledged by the head-end (Outbox.acked, which also
# writes the `ack` transaction-log entry), in steady state over N messages of
# GBCS response sizes, at most 3 pending at a time (a busy link).
import json
import sys

import vfs
from blockdev import FileBlockDevice
from store import Store
from wan.outbox import KIND_RESPONSE, CRITICAL, Outbox, TxLog

BLOCKS = 256
ROOT = "/flash"
N = 200
WARM = 40
SIZES = (120, 250, 90, 400, 180, 700)  # bytes: short responses to device-log reads


def main(img):
    dev = FileBlockDevice(img, BLOCKS)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    st = Store(ROOT + "/data")
    tx = TxLog(st.ringlog("transactions", 100, keep_open=False), lambda: 1763780000)  # as wan.service makes it
    ob = Outbox(st.journal("outbox"), None, tx)
    pending = []
    base = None
    for i in range(WARM + N):
        if i == WARM:
            base = dict(dev.counters())
        pending.append(ob.add(bytes(SIZES[i % len(SIZES)]), CRITICAL, KIND_RESPONSE, i))
        ob.due()
        if len(pending) >= 3:
            ob.acked(pending.pop(0))
    for s in pending:
        ob.acked(s)
    c = dev.counters()
    w = c["writes"] - base["writes"]
    e = c["erases"] - base["erases"]
    print("FIGURES " + json.dumps({"messages": N, "writes_per_msg": w / N, "erases_per_msg": e / N,
                                   "pending_after": len(ob)}))


main(sys.argv[1])
