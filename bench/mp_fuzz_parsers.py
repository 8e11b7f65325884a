# ruff: noqa: UP031
# Hostile input for the hub's byte parsers, under MicroPython. One table:
# parser name -> (function run on one input, the error classes it may raise).
# Each function drives the parser the way the firmware does (incremental
# decoders fed in pieces, then the frame decoders on what they deliver).
# Anything else escaping is a crash.
#
# fuzz(name, path): one result line per hex input ("ok", the error class or
# kind (log.kind_of), or "CRASH <type> <message>") - the batch harness of hil/campaign/fuzz.py
# (tests/test_fuzz_parsers.py and `chub bench`).
# replay(name): the kept corpus bench/fuzz_corpus/<name>/*.hex, replayed in CI
# by tests/mp/mp_fuzz.py.
import binascii
import os

from han import peer
from han import ash, tunnel, zcl, zcl_clusters
from han import ezsp_frames as F
from wan import at, link
import local_port as lp
from local_frame import FrameError
from log import kind_of

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
CORPUS = _HERE + "/fuzz_corpus"


_state = {"first": None, "allowed": ()}


def _try(fn, *args):
    """A secondary step: the target's own errors are expected here; the first
    one met names the input's result. Anything else escapes (a crash)."""
    try:
        return fn(*args)
    except _state["allowed"] as e:
        if _state["first"] is None:
            _state["first"] = kind_of(e)
    return None


# ---- ASH ---------------------------------------------------------------------

def _ash(data):
    # the NCP UART byte stream, in two pieces, through the incremental
    # decoder; then the whole input as one unstuffed frame
    d = ash.Decoder()
    half = len(data) // 2
    for part in (data[:half], data[half:]):
        for ev in peer.frames(d, part):
            if isinstance(ev, tuple):
                ctl, payload = ev
                peer.parse_control(ctl)
            elif _state["first"] is None:
                _state["first"] = kind_of(ev)
    # the whole input as one frame on the wire: unstuffed up to its flag
    body = bytes(data)
    if body and body[-1] == 0x7E:
        body = body[:-1]
    raw = _try(peer.unstuff, body)
    if raw is not None:
        peer.decode_frame(bytearray(raw))


# ---- EZSP ----------------------------------------------------------------------

def _ezsp(data):
    # what Ezsp's receive loop does with an ASH DATA payload, for both versions
    for ver in (14, F.LEGACY):
        try:
            seq, fc, fid, pos = F.decode_header(ver, data)
            sch = F.lookup(ver, F.name_of(ver, fid))
            for k in (1, 2):
                try:
                    F.decode_params(ver, sch[k], data, pos, False)
                except F.EzspError:
                    pass
        except F.EzspError:
            pass
    peer.ezsp_decode_frame(13, data, False)


# ---- ZCL -----------------------------------------------------------------------

_ZCL_DECODERS = (
    peer.decode_request_mirror_rsp, zcl_clusters.decode_configure_mirror,
    peer.decode_mirror_report_attribute_rsp, tunnel.decode_request_tunnel, tunnel.decode_request_tunnel_rsp,
    tunnel.decode_tunnel_id, peer.decode_tunnel_u16, tunnel.decode_transfer_data_error,
    tunnel.decode_transfer_data_payload, zcl.decode_read_attributes, zcl.decode_read_attributes_rsp,
    zcl.decode_attribute_records, peer.decode_status_records, peer.decode_write_attributes_rsp,
    peer.decode_configure_reporting, peer.decode_configure_reporting_rsp, peer.decode_default_rsp,
)


def _zcl(data):
    h, o = zcl.parse_header(data)
    # every payload decoder on the payload: a cluster command decoded with
    # the wrong decoder is still hostile input for that decoder
    p = data[o:]  # the payload alone, as the hub hands it to them
    for f in _ZCL_DECODERS:
        try:
            f(p)
        except zcl.ZclError:
            pass
    peer.zcl_decode(data)


# ---- ZSE tunnel ----------------------------------------------------------------

def _tunnel(data):
    r = tunnel.Reassembler(64)
    try:
        tid = peer.add_frame(r, data)
        peer.add_frame(r, data)  # a second fragment of the same message
        r.add_block(tid, 0, 2, data)
    except tunnel.TunnelError:
        pass
    if data:
        try:
            tunnel.decode_gsme(data[1:])
        except tunnel.GsmeError:
            pass
    peer.decode_transfer_data(data)


# ---- AT lines (SIM7600) ---------------------------------------------------------

_at_driver = []


def _at(data):
    from wan import sim7600, sim7600_up

    # one driver for the whole replay, as on the hub (its line and raw-data
    # buffers are preallocated once); begin() resets the parser per input
    if not _at_driver:
        _at_driver.append(sim7600.Sim7600(None, None))
    d = _at_driver[0]
    d._rxq = []  # pushed socket data nobody reads here (the WAN job drains it on the hub)
    p = d.at.p
    p.begin(b"AT+CIPRXGET=2,0,1460", prefix=b"+CIPRXGET:")
    half = len(data) // 2
    p.feed(data[:half])
    p.end()
    p.begin(b"AT+CSQ", prefix=b"+CSQ:", done=b"+NETOPEN:")
    p.feed(data[half:])
    p.feed(b"\r\n")
    # the info-line parsers the driver runs on command replies
    for ln in bytes(data).split(b"\n"):
        ln = ln.strip()
        if ln.startswith(b"+CSQ:"):
            _try(sim7600.parse_csq, ln)
        elif ln.startswith(b"+CPSI:"):
            _try(sim7600_up.parse_cpsi, ln)
        elif ln.startswith(b"+CCLK:"):
            _try(sim7600_up.parse_cclk, ln)
        elif ln.startswith(b"+CREG:"):
            _try(sim7600.parse_reg, ln, b"+CREG:")
        elif ln.startswith(b"+CME ERROR:"):
            at.ATError("CmeError", b"AT", ln)  # parses the code from the line
        _try(at.split_fields, ln, ln[:1])


# ---- head-end link --------------------------------------------------------------

def _link(data):
    d = link.Decoder()
    got = 0
    for k in range(0, len(data), 97):
        d.feed(data[k:k + 97])
        while True:
            fr = d.next()
            if fr is None:
                break
            got += 1
            ftype, fid, p = fr
            # the hub parses the head-end's frames: ACK, HELLO_ACK, TIME (it
            # sends HELLO, the head-end parses it)
            if ftype == link.ACK:
                link.parse_ack(p)
            elif ftype in (link.HELLO_ACK, link.TIME):
                link.u32_payload(p, "time")


# ---- the local port ---------------------------------------------------------------

class _Reader:
    def __init__(self, data):
        self.data = data
        self.off = 0

    async def read(self, n):
        k = self.data[self.off:self.off + n]
        self.off += len(k)
        return k


class _Writer:
    def __init__(self):
        self.out = bytearray()

    def write(self, b):
        self.out.extend(b)

    async def drain(self):
        pass


async def _dispatch(req):
    # the hub's dispatch contract: unknown command -> KeyError(cmd),
    # bad arguments -> ValueError/TypeError
    cmd = req["cmd"]
    if cmd == "status":
        return {"ok": 1}
    if cmd == "echo":
        return {"args": req.get("args")}
    if cmd == "int":
        return {"v": int(req.get("v"))}
    raise KeyError(cmd)


def _local(data):
    import asyncio

    fr = lp.FrameReader(256)
    off = 0
    while True:
        off = fr.feed(data, off)
        if fr.event is None:
            break
    fr.truncate()
    w = _Writer()
    asyncio.run(lp.serve(_Reader(bytes(data)), w, _dispatch, 50, 256, 64))
    # every reply the server wrote is a well-formed frame
    rd = lp.FrameReader(1024)
    o = 0
    while o < len(w.out):
        o = rd.feed(w.out, o)
        if rd.event is None:
            break
        if rd.event != lp.OK:
            raise AssertionError("the server wrote a malformed reply frame")
    if fr.errors and _state["first"] is None:
        _state["first"] = "FrameError"


TARGETS = {
    "ash": (_ash, (ash.AshError,)),
    "ezsp": (_ezsp, (F.EzspError,)),
    "zcl": (_zcl, (zcl.ZclError,)),
    "tunnel": (_tunnel, (tunnel.TunnelError, zcl.ZclError)),
    "at": (_at, (at.ATFormatError,)),
    "link": (_link, (link.LinkError,)),
    "local_port": (_local, (FrameError,)),
}


def run_one(name, data):
    fn, allowed = TARGETS[name]
    _state["first"] = None
    _state["allowed"] = allowed
    try:
        fn(data)
    except allowed as e:
        return kind_of(e)
    except Exception as e:  # noqa: BLE001 - anything else is a crash
        return "CRASH %s %s" % (type(e).__name__, str(e)[:120])
    return _state["first"] or "ok"


def fuzz(name, path):
    with open(path) as fh:
        for ln in fh:
            ln = ln.strip()
            print("R", run_one(name, binascii.unhexlify(ln)))


def replay(name):
    """(inputs, crashes, result classes) for bench/fuzz_corpus/<name>/. Inputs in
    known-*.hex crashed a parser and are reported to its owner: replayed and
    counted (KNOWN), not failed on."""
    d = CORPUS + "/" + name
    n = 0
    known = 0
    crashes = []
    seen = {}
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".hex"):
            continue
        with open(d + "/" + fn) as fh:
            for ln in fh:
                ln = ln.strip()
                if not ln and fn != "ok.hex":
                    continue
                res = run_one(name, binascii.unhexlify(ln))
                n += 1
                seen[res.split(" ")[0]] = 1
                if res.startswith("CRASH"):
                    if fn.startswith("known-"):
                        known += 1
                    else:
                        crashes.append((ln[:64], res))
    print("FUZZ", name, "inputs", n, "crashes", len(crashes), "known", known)
    return n, crashes, seen
