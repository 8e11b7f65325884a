# AT parser core (wan.at.ATParser): replies vs URCs, errors, garbage, split
# reads and counted binary data. Byte strings follow vectors/modem/SIM7600.md.
from wan.at import ATError, ATFormatError, ATParser, split_fields, to_int

HEAP = "256k"


def _parser():
    p = ATParser()
    seen = []
    for pre in (b"+CREG:", b"+CGREG:", b"+IPCLOSE:", b"+CIPEVENT:", b"+CIPRXGET: 1,", b"RDY",
                b"+CPIN:", b"SMS DONE", b"PB DONE", b"*PSUTTZ:", b"+CTZV:", b"+CTZE:"):
        p.on(pre, seen.append)
    data = []
    p.on_data = lambda link, mv: data.append((link, bytes(mv)))
    return p, seen, data


def _feed_bytewise(p, raw):
    for i in range(len(raw)):
        p.feed(raw[i:i + 1])


def test_boot_urcs_without_command():
    p, seen, _ = _parser()
    p.feed(b"\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n\r\nPB DONE\r\n")
    assert seen == [b"RDY", b"+CPIN: READY", b"SMS DONE", b"PB DONE"], seen
    assert p.garbled == 0 and p.urcs == 4


def test_one_handler_for_a_tuple_of_prefixes():
    p = ATParser()
    seen = []
    p.on((b"+CREG:", b"+CGREG:"), seen.append)
    p.on(b"RDY", lambda ln: seen.append(b"boot"))
    p.feed(b"\r\n+CGREG: 5\r\n\r\nRDY\r\n\r\n+CREG: 1\r\n\r\n+CEREG: 1\r\n")
    assert seen == [b"+CGREG: 5", b"boot", b"+CREG: 1"], seen
    assert p.urcs == 4 and p.garbled == 0  # +CEREG: a known URC with no handler here


def test_reply_with_urcs_interleaved():
    p, seen, _ = _parser()
    p.begin(b"AT+CSQ", b"+CSQ:")
    p.feed(b"\r\n+CGREG: 1,\"1A2D\",\"01B2C3D4\"\r\n\r\n+CSQ: 21,99\r\n\r\n+IPCLOSE: 0,1\r\n")
    assert not p.finished
    p.feed(b"\r\nOK\r\n")
    assert p.finished and p.result is None
    assert p.lines == [b"+CSQ: 21,99"]
    assert seen == [b'+CGREG: 1,"1A2D","01B2C3D4"', b"+IPCLOSE: 0,1"]


def test_echo_is_skipped_and_split_reads():
    p, seen, _ = _parser()
    p.begin(b"AT+CGMR", b"+CGMR:")
    _feed_bytewise(p, b"AT+CGMR\r\r\n+CGMR: LE20B04SIM7600M22\r\n\r\nOK\r\n")
    assert p.finished and p.result is None and p.lines == [b"+CGMR: LE20B04SIM7600M22"]
    assert p.garbled == 0


def test_bare_info_lines():
    p, _, _ = _parser()
    p.begin(b"AT+CIMI")
    p.feed(b"\r\n234500000000000\r\n\r\nOK\r\n")
    assert p.lines == [b"234500000000000"] and p.result is None


def test_cme_errors_numeric_and_verbose():
    p, _, _ = _parser()
    p.begin(b"AT+CPIN?", b"+CPIN:")
    p.feed(b"\r\n+CME ERROR: SIM not inserted\r\n")
    assert p.finished and p.result.args[0] == "CmeError" and p.result.code == 10
    p.end()
    p.begin(b'AT+CPIN="9999"', b"+CPIN:")
    p.feed(b"\r\n+CME ERROR: 16\r\n")
    assert p.result.args[0] == "CmeError" and p.result.code == 16
    p.end()
    p.begin(b"AT+CGACT=1,1")
    p.feed(b"\r\n+CME ERROR: PDP authentication failure\r\n")
    assert p.result.code == 149
    p.end()
    p.begin(b"AT+X")
    p.feed(b"\r\n+CME ERROR: something new\r\n")
    assert p.result.code == -1


def test_ip_error_and_ciperror():
    p, _, _ = _parser()
    p.begin(b"AT+NETOPEN", None, b"+NETOPEN:")
    p.feed(b"\r\n+IP ERROR: Network is already opened\r\n\r\nERROR\r\n")
    assert p.result.args[0] == "IpError" and p.result.info == b"Network is already opened"
    p.end()
    p.begin(b"AT+CIPSEND=1,43", b"+CIPSEND:", b"+CIPSEND:", True)
    p.feed(b"\r\n+CIPERROR: 4\r\n")
    assert p.result.args[0] == "CipError" and p.result.code == 4 and not p.prompt


def test_each_final_result_code_ends_the_command():
    p, _, _ = _parser()
    for line, kind in ((b"ERROR", "ATError"), (b"+CME ERROR: 10", "CmeError"), (b"+CMS ERROR: 301", "CmsError"),
                       (b"+CIPERROR: 2", "CipError")):
        p.begin(b"AT+X", b"+X:")
        p.feed(b"\r\n+X: 1\r\n\r\n" + line + b"\r\n")
        assert p.finished and type(p.result) is ATError and p.result.args[0] == kind, (line, p.result)
        assert p.result.line == line and p.result.lines == [b"+X: 1"], p.result.lines
        r = p.result
        p.end()  # the result is the caller's: the parser keeps none
        assert p.result is None and p.lines is None
    assert r.code == 2  # CipError
    p.begin(b"AT+CMGS", b"+CMGS:")
    p.feed(b"\r\n+CMS ERROR: 301\r\n")
    assert p.result.code == 301
    p.end()
    p.begin(b"AT+X", b"+X:")
    p.feed(b"\r\nOK\r\n")
    assert p.finished and p.result is None
    assert p.stray == 0 and p.garbled == 0


def test_ok_and_error_match_whole_lines_only():
    p, _, _ = _parser()
    p.begin(b"AT+CIMI")
    p.feed(b"\r\nERROR 5\r\n\r\nOKAY\r\n")
    assert not p.finished and p.lines == [b"ERROR 5", b"OKAY"]  # bare information lines
    p.feed(b"\r\nOK\r\n")
    assert p.finished and p.result is None


def test_final_results_with_no_command_in_flight():
    p, _, _ = _parser()
    p.feed(b"\r\nOK\r\n\r\nERROR\r\n\r\n+CME ERROR: 10\r\n")
    assert p.stray == 3 and p.garbled == 0
    p.feed(b"\r\n+CMS ERROR: 301\r\n\r\n+CIPERROR: 4\r\n")  # not stray finals: garbage
    assert p.stray == 3 and p.garbled == 2
    p.begin(b"AT")
    p.feed(b"\r\nOK\r\n")
    p.feed(b"\r\nERROR\r\n")  # the command finished: a late final
    assert p.result is None and p.stray == 4


def test_done_line_either_side_of_ok():
    p, _, _ = _parser()
    p.begin(b'AT+CIPOPEN=0,"TCP","h",1', b"+CIPOPEN:", b"+CIPOPEN:")
    p.feed(b"\r\nOK\r\n")
    assert not p.finished  # still waiting for +CIPOPEN
    p.feed(b"\r\n+CIPOPEN: 0,0\r\n")
    assert p.finished and p.result is None and p.lines == [b"+CIPOPEN: 0,0"]
    p.end()
    p.begin(b'AT+CIPOPEN=1,"TCP","h",1', b"+CIPOPEN:", b"+CIPOPEN:")
    p.feed(b"\r\n+CIPOPEN: 1,0\r\n")
    assert not p.finished and not p.done_err
    p.feed(b"\r\nOK\r\n")
    assert p.finished and p.result is None
    p.end()
    # failure code with the ERROR after it
    p.begin(b'AT+CIPOPEN=0,"TCP","h",1', b"+CIPOPEN:", b"+CIPOPEN:")
    p.feed(b"\r\n+CIPOPEN: 0,2\r\n")
    assert p.done_err and not p.finished
    p.feed(b"\r\nERROR\r\n")
    assert p.finished and p.result.lines == [b"+CIPOPEN: 0,2"]
    p.end()
    p.feed(b"\r\nOK\r\n")  # a late final with nothing in flight
    assert p.stray == 1


def test_prompt_and_send_result():
    p, _, _ = _parser()
    for prompt in (b"\r\n>", b"\r\n> ", b">"):
        p.begin(b"AT+CIPSEND=0,5", b"+CIPSEND:", b"+CIPSEND:", True)
        p.feed(prompt)
        assert p.prompt is True and not p.finished
        p.feed(b"\r\nOK\r\n\r\n+CIPSEND: 0,5,5\r\n")
        assert p.finished and p.result is None and p.lines == [b"+CIPSEND: 0,5,5"], p.lines
        p.end()
    assert p.garbled == 0


def test_gt_without_prompt_wanted_is_garbage():
    p, _, _ = _parser()
    p.feed(b"\r\n>\r\n")
    assert p.garbled == 1


def test_buffer_mode_read_binary_with_crlf_ok_gt_inside():
    p, seen, _ = _parser()
    payload = b"\r\nOK\r\n>\x00\xff+CIPRXGET: 1,0\r\nERROR\r\n" + bytes(range(20))
    p.begin(b"AT+CIPRXGET=2,0,1460", b"+CIPRXGET: 2,")
    raw = b"\r\n+CIPRXGET: 1,0\r\n\r\n+CIPRXGET: 2,0,%d,0\r\n" % len(payload) + payload + b"\r\nOK\r\n"
    _feed_bytewise(p, raw)
    assert p.finished and p.result is None, p.result
    assert p.data == payload
    assert seen == [b"+CIPRXGET: 1,0"]
    assert p.garbled == 0
    # the same with one feed
    p.end()
    p.begin(b"AT+CIPRXGET=2,0,1460", b"+CIPRXGET: 2,")
    p.feed(raw)
    assert p.data == payload and p.finished


def test_channel_hands_a_read_block_over_and_keeps_no_copy():
    # AT+CIPRXGET=2 data (up to 1460 bytes) goes to the caller; neither the
    # channel nor the parser may hold on to it until the next read
    import asyncio

    from wan.at import ATChannel

    from modemline import Line

    payload = bytes(range(256)) * 5

    def answer(b):
        if b.startswith(b"AT+CIPRXGET=2"):
            return b"\r\n+CIPRXGET: 2,0,%d,0\r\n" % len(payload) + payload + b"\r\nOK\r\n"

    async def main():
        ln = Line(answer)
        ch = ATChannel(ln, ln, 1000)
        ch.start()
        lines, data = await ch.cmd_data("AT+CIPRXGET=2,0,1460", b"+CIPRXGET: 2,")
        ch.stop()
        assert data == payload and lines == [b"+CIPRXGET: 2,0,%d,0" % len(payload)], lines
        assert ch.p.data is None and ch.p.lines is None

    asyncio.run(main())


def test_a_read_in_flight_is_one_coroutine_frame():
    # AT+CIPRXGET=2 / AT+CCHRECV while the reply is awaited: cmd_data is the
    # channel's cmd coroutine itself (no frame of its own around it) and cmd
    # waits in its own frame (no waiting coroutine, no closure per wait).
    # Measured on the 32-bit build 368 -> 192 bytes (the 64-bit port:
    # 736 -> 384), the reading task's own ~32 included
    import asyncio
    import gc
    import sys

    from modemline import Line
    from wan.at import ATChannel

    W = 8 if sys.maxsize > 2**31 else 4
    payload = bytes(range(100))

    sent = asyncio.Event()

    def answer(b):
        sent.set()  # the reply comes once the heap is read

    async def main():
        ln = Line(answer)
        ch = ATChannel(ln, ln, 1000)
        ch.start()
        await asyncio.sleep_ms(0)
        gc.collect()
        a = gc.mem_alloc()
        t = asyncio.create_task(ch.cmd_data(b"AT+CIPRXGET=2,0,512", b"+CIPRXGET: 2,"))
        await sent.wait()
        for _ in range(3):
            await asyncio.sleep_ms(0)
        gc.collect()
        held = gc.mem_alloc() - a
        ln.reply(b"\r\n+CIPRXGET: 2,0,%d,0\r\n" % len(payload) + payload + b"\r\nOK\r\n")
        lines, data = await t
        ch.stop()
        assert data == payload and lines == [b"+CIPRXGET: 2,0,100,0"], lines
        assert ch.p.data is None and ch.p.lines is None
        return held

    held = asyncio.run(main())
    assert held <= 56 * W, held


def test_push_mode_headers():
    p, seen, data = _parser()
    p.feed(b"\r\n+RECEIVE,0,6\r\nab\r\ncd\r\n+IPD3\r\nxyz\r\nRECV FROM:1.2.3.4:5\r\n+IPD2\r\nOK")
    p.feed(b"\r\n")
    assert data == [(0, b"ab\r\ncd"), (-1, b"xyz"), (-1, b"OK")], data
    assert p.stray == 0 and p.garbled == 0


def test_garbled_lines_counted_and_skipped():
    p, seen, _ = _parser()
    p.begin(b"AT+CSQ", b"+CSQ:")
    p.feed(b"\r\n\x00\xff\xfe#!\r\n\r\n+CSQ: 18,99\r\n\r\nBLAH\r\n" + b"x" * 600 + b"\r\n\r\nOK\r\n")
    assert p.finished and p.result is None and p.lines == [b"+CSQ: 18,99"]
    assert p.garbled == 3, p.garbled
    # headers with silly lengths do not swallow the stream
    p.end()
    p.feed(b"\r\n+RECEIVE,0,99999\r\n+IPD-1\r\n+IPD\r\n+RECEIVE,x\r\nRDY\r\n")
    assert p.garbled == 7 and seen[-1] == b"RDY"


def test_urc_handler_value_error_is_counted():
    p = ATParser()

    def bad(line):
        raise ATFormatError("nope")

    p.on(b"+CREG:", bad)
    p.feed(b"\r\n+CREG: x\r\n")
    assert p.garbled == 1


def test_split_fields_and_to_int():
    assert split_fields(b'+CCLK: "18/12/22,18:33:12+32"', b"+CCLK:") == [b"18/12/22,18:33:12+32"]
    assert split_fields(b'+CGREG: 2,1,"1A2D","01B2C3D4"', b"+CGREG:") == [b"2", b"1", b"1A2D", b"01B2C3D4"]
    assert to_int(b"0x1A2D", 16) == 0x1A2D
    for bad in (b"", b"x", b" 1"):
        try:
            to_int(bad)
            raise AssertionError(bad)
        except ATFormatError:
            pass
    try:
        split_fields(b'+X: "a', b"+X:")
        raise AssertionError("quote")
    except ATFormatError:
        pass


def test_cpsi_non_ascii_is_a_format_error():
    # found by tests/mp/mp_fuzz.py (corpus at/known-crash.hex): UnicodeError escaped
    from wan.at import ATFormatError
    from wan.sim7600_up import parse_cpsi

    good = b"+CPSI: LTE,Online,234-15,0x1A2B,27449090,301,EUTRAN-BAND20,6300,5,5,-94,-1021,-760,11"
    assert parse_cpsi(good)[:2] == ("LTE", "234-15")
    for bad in (good.replace(b"234-15", b"2\xff4-15"), good.replace(b"LTE,", b"L\xfeE,")):
        try:
            parse_cpsi(bad)
        except ATFormatError:
            continue
        raise AssertionError("accepted %r" % bad)


def test_ssl_session_read_binary_then_result_line():
    # AT+CCHRECV=0,1460 (manual receive mode): the block, then +CCHRECV: 0,0 and OK
    p, seen, _ = _parser()
    p.begin(b"AT+CCHRECV=0,1460", b"+CCHRECV: DATA,", b"+CCHRECV: 0,")
    block = b"CH\x05\r\nOK\r\n>\x00"
    _feed_bytewise(p, b"\r\n+CCHRECV: DATA,0,%d\r\n" % len(block) + block + b"\r\n+CCHRECV: 0,0\r\n\r\nOK\r\n")
    assert p.finished and p.result is None and bytes(p.data) == block, (p.result, p.data)
    # nothing waiting: no block, the result line and OK
    p.begin(b"AT+CCHRECV=0,1460", b"+CCHRECV: DATA,", b"+CCHRECV: 0,")
    p.feed(b"\r\n+CCHRECV: 0,0\r\n\r\nOK\r\n")
    assert p.finished and p.result is None and p.data is None
    # a bad count ends the command with an error instead of swallowing the stream
    p.begin(b"AT+CCHRECV=0,1460", b"+CCHRECV: DATA,", b"+CCHRECV: 0,")
    p.feed(b"\r\n+CCHRECV: DATA,0,99999\r\n")
    assert p.finished and isinstance(p.result, ATError)
    assert p.garbled == 0


def test_ssl_session_pushed_data_and_urcs():
    # automatic receive mode pushes +CCHRECV: DATA,<s>,<n> + bytes; the SSL URCs are known ones
    p, seen, data = _parser()
    p.feed(b"\r\n+CCHRECV: DATA,0,4\r\nab\r\n\r\n+CCHEVENT: 0,RECV EVENT\r\n\r\n+CCH_PEER_CLOSED: 0\r\n")
    assert data == [(0, b"ab\r\n")] and p.garbled == 0 and p.urcs == 3


def test_the_parser_holds_no_line_buffer_between_lines():
    # docs/proof.md (branch wanws): a line that ends in the chunk it began
    # in is read from the chunk itself; only a line split across chunks is
    # kept, as its bytes so far (it was a standing 256-byte buffer). On the
    # 32-bit build 592 -> 320 bytes for a parser (928 -> 640 on the 64-bit port)
    import gc
    import sys

    W = 8 if sys.maxsize > 2**31 else 4
    gc.collect()
    a = gc.mem_alloc()
    p = ATParser()
    gc.collect()
    n = gc.mem_alloc() - a
    assert n <= 84 * W, n
    # chunked any way, the same lines, URCs, data and counts; a line over
    # the limit is garbage however it arrives
    raw = (b"\r\nRDY\r\n+CREG: 1,\"00C3\",\"0010A5CB\"\r\nAT+CIPRXGET=2,0,5\r\r\n" + b"X" * 300 + b"\r\n"
           b"+CIPRXGET: 2,0,5,0\r\nab\r\nc\r\nOK\r\n+CPIN: READY\n\r\n+IPD5\r\n12345\r\n" + b"Y" * 256 + b"\r\n"
           + b"Z" * 257 + b"\r\nPB DONE\r\n")
    want = None
    for step in (len(raw), 1, 2, 7, 64, 255, 256, 257):
        p, seen, data = _parser()
        p.begin(b"AT+CIPRXGET=2,0,5", b"+CIPRXGET: 2,")
        for i in range(0, len(raw), step):
            p.feed(raw[i:i + step])
        out = (p.finished, p.result, p.lines, bytes(p.data), seen, data, p.garbled, p.urcs, p.stray)
        if want is None:
            want = out
            assert p.finished and p.result is None and p.lines == [b"+CIPRXGET: 2,0,5,0"], out
            assert p.data == b"ab\r\nc" and data == [(-1, b"12345")], out
            assert seen == [b"RDY", b'+CREG: 1,"00C3","0010A5CB"', b"+CPIN: READY", b"PB DONE"], out
            assert p.garbled == 3, out  # X*300 and Z*257 over the limit, Y*256 no line known
        assert out == want, (step, out, want)


def _on_reg(line):
    pass


def test_a_parser_between_commands_holds_no_reply():
    # once a command ends its lines, data or error are the caller's
    # (ATChannel.cmd returned or raised them): the parser keeps none; its
    # URC handlers are one tuple; its line and raw-block states are one
    # attribute each (23 attributes: 29 on main). Measured on the 64-bit
    # port 1152 -> 480 bytes, on the 32-bit build 240
    import gc
    import sys

    W = 8 if sys.maxsize > 2**31 else 4

    def two_commands():
        p = ATParser()
        p.on((b"+CREG:", b"+CGREG:"), _on_reg)
        p.begin(b"AT+CSQ", b"+CSQ:")
        p.feed(b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n")
        assert p.finished and p.lines == [b"+CSQ: 21,99"]
        p.end()
        p.begin(b"AT+X", b"+X:")
        p.feed(b"\r\n+X: 1\r\n\r\n+CME ERROR: 10\r\n")
        assert p.finished and p.result.code == 10
        p.end()
        return p

    # what a first run interns (names, the error's text) is not the
    # parser's; that one is kept meanwhile (no stale reference to it freed
    # while the second is measured)
    first = two_commands()
    gc.collect()
    a = gc.mem_alloc()
    p = two_commands()
    gc.collect()
    n = gc.mem_alloc() - a
    print("parser: %d bytes" % n)
    assert first.finished and p.result is None and p.lines is None
    assert n <= 64 * W, n


def test_a_read_block_over_the_limit_is_an_at_error():
    # a +CIPRXGET: 2 header announcing more than the parser takes ends the
    # command with kind ATError (main raised ATError(cmd, line, lines): the
    # command's bytes as its kind)
    p, _, _ = _parser()
    p.begin(b"AT+CIPRXGET=2,0,1460", b"+CIPRXGET: 2,")
    p.feed(b"\r\n+CIPRXGET: 2,0,2000,0\r\n")
    assert p.finished and p.result.args[0] == "ATError", p.result.args
    assert p.result.cmd == b"AT+CIPRXGET=2,0,1460" and p.result.line == b"+CIPRXGET: 2,0,2000,0"


def test_a_stopped_channel_refuses_commands():
    # stop() ends the reader; a command after it is refused at once (ATClosed)
    # and start() does not bring a reader back
    import asyncio

    from modemline import Line
    from wan.at import ATChannel

    async def main():
        ln = Line(lambda b: b"\r\nOK\r\n")
        ch = ATChannel(ln, ln, 200)
        ch.start()
        assert await ch.cmd("AT") == ()
        ch.stop()
        ch.start()
        try:
            await ch.cmd("AT")
            raise AssertionError("a command on a stopped channel")
        except ATError as e:
            assert e.args[0] == "ATClosed", e.args
        assert not ch._task

    asyncio.run(main())
