# The three logs' RAM when full: what the CHF event and security logs and the
# WAN transaction log hold in the heap with every entry of their capacity
# taken, over what they hold empty (their index: a record's sequence number,
# file offset and length).
#
#   micropython bench/mp_logs_full.py FLASH_FILE
#
# (MICROPYPATH must cover firmware/ and boards/unix/.) The logs are made as
# the hub makes them (app.py: open_logs with the hub's capacity and the
# malformed-input watch; wan.service: the transaction log's ring of 100) on a
# fresh LittleFS2 image. The entries are of the sizes the hub writes: a
# transaction with a short detail, events with an 8-byte EUI, each a code of
# its own and 100 s apart (no open run collapses them). The last line is
# "FIGURES <json>": heap_logs_full_kb and the entries each log holds.
import gc
import json
import sys

import vfs
from blockdev import FileBlockDevice
from chf.logs import MalformedWatch, open_logs
from store import Store
from wan.outbox import TxLog

ROOT = "/flash"
BLOCKS = 128
LOG_CAPACITY = 40  # app.py's _LOG_CAPACITY
TX_CAPACITY = 100  # wan.service's ring


def main(path):
    # path: a new file (the bench runs this in a temporary folder)
    dev = FileBlockDevice(path, BLOCKS)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), ROOT)
    st = Store(ROOT + "/data")
    now = [1000]
    ev, sec = open_logs(st, LOG_CAPACITY, utc=lambda: now[0], watch=MalformedWatch())
    tx = TxLog(st.ringlog("transactions", TX_CAPACITY), lambda: now[0])
    st.kv("log_lost", keep=False)
    gc.collect()
    before = gc.mem_alloc()
    for i in range(2 * TX_CAPACITY):
        tx.add("ack" if i % 2 else "link_drop", i, b"" if i % 2 else b"ETIMEDOUT")
    for i in range(2 * LOG_CAPACITY):
        now[0] += 100
        eui = bytes([0x00, 0xDB, 0x12, 0x34, 0x56, 0x78, 0xA0, i & 0xFF])
        ev.append(0x8000 + i, eui, now[0])
        sec.append(0x8100 + i, eui, now[0])
    eui = None
    gc.collect()
    used = gc.mem_alloc() - before
    out = {"heap_logs_full_kb": round(used / 1024, 2), "transactions": len(tx), "event": len(ev),
           "security": len(sec), "word_bits": 64 if sys.maxsize > 2**32 else 32}
    vfs.umount(ROOT)
    print("FIGURES " + json.dumps(out))


main(sys.argv[1])
