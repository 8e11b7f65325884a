# The unix board's control line (boards/unix/board.py control_task) under
# micropython, on a TCP line of 127.0.0.1 as the rig's.
import asyncio
import gc

import board

HEAP = "256k"


def _run(lines, n_leds=0):
    # control_task on a line of its own; the heap (after a collection, from
    # before the line is made) after each of `lines`. n_leds: LEDs set
    # before the line is up, sent first, replaced by the board once it is
    # (their dict counted in the start)
    got = []
    conn = []

    async def served(r, w):
        conn.append(w)

    async def main():
        srv = None
        for port in range(39411, 39511):
            try:
                srv = await asyncio.start_server(served, "127.0.0.1", port)
                break
            except OSError:
                continue
        assert srv is not None
        board._cfg = {"uarts": {"ctl": port}}
        board.leds = {"han": ["flash"] * n_leds, "power": "on"} if n_leds else {}
        await asyncio.sleep_ms(1)
        gc.collect()
        before = gc.mem_alloc()
        t = asyncio.create_task(board.control_task())
        for _ in range(100):
            if conn:
                break
            await asyncio.sleep_ms(10)
        board.leds = {}
        w = conn[0]
        for line in lines:
            w.write(line)
            await w.drain()
            await asyncio.sleep_ms(50)
            gc.collect()
            got.append(gc.mem_alloc() - before)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
        board._ctl_writer = None
        w.close()
        srv.close()

    asyncio.run(main())
    return got


def test_the_control_line_holds_nothing_sent_before_it_was_up():
    # the LEDs set before the line was up are sent first; the task holds
    # nothing of them after (main kept their dict in a stale slot of its
    # frame for the hub's life: 208 bytes held here on a 32-bit board, 416
    # on a 64-bit one)
    gc.collect()
    a = gc.mem_alloc()
    d = {"han": ["flash"] * 40, "power": "on"}
    gc.collect()
    size = gc.mem_alloc() - a
    del d
    none = _run([b"{}\n"])[0]
    sent = _run([b"{}\n"], 40)[0]
    # the LEDs' dict, counted in the start, is gone once the board replaced it
    print("the control line after LEDs sent first: %d bytes (%d without; their dict %d)" % (sent, none, size))
    assert sent <= none - size + 32, (sent, none, size)


def test_the_control_line_holds_no_line_between_lines():
    # control_task waits for the rig's next line holding nothing of the
    # last one: main's frame kept the last line and its parsed dict (a
    # 200-byte line: 416 bytes on a 32-bit board, 448 on a 64-bit one;
    # 0 now)
    got = _run((b'{"pad": "' + b"x" * 180 + b'"}\n', b"{}\n"))
    held = got[0] - got[1]
    print("the control line after a 200-byte line: %d bytes more than after {}" % held)
    assert held <= 32, got
