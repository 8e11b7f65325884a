# The hub's side of bench/heapdump/heapdump.py (measurement only, never in an
# image): imported before the hub by the emulated board's "preload", it
# answers the control line's {"heapdump": arg}. It prints the ids of every
# module, globals dict, class and function the hub holds ("HD id ..."), then
# collects and prints the heap map (micropython.mem_info(1): the pool's
# address and each block free, head or tail), then, when arg is
# "0xADDR:LENGTH", the pool's bytes in hex ("HX ..." lines, uctypes over the
# pool) as they were when the map was printed: what is printed after the map
# lands in blocks the map calls free. Its own code and frames cost ~1.3 KB,
# its record of dropped modules (below) 0.1-0.3 KB. Before the map it prints the names interned at run time (qstr_info(1):
# "Q(name)" lines, the heap's qstr pools). bare() is the same dump of a bare
# import of the boot set (heapdump.py --gap): args read from stdin.
import gc
import sys

import board
import lazy
import micropython
import uctypes

# the modules lazy.drop forgot: name -> the last four's ids in hex text
# (printed as "dropped NAME"): a dropped module some object still holds is
# named in the dump. Text, not ints: an int's digits would keep the module
# alive (the collector reads every word as a possible pointer).
_dropped = {}
_drop = lazy.drop


def _drop_named(name, collect=True):
    m = sys.modules.get(name)
    if m is not None:
        ii = _dropped.get(name, "").split()
        ii.append("%x" % id(m))
        _dropped[name] = " ".join(ii[-4:])
    return _drop(name, collect)


lazy.drop = _drop_named


def _gen():
    yield 1


def _ids():
    fn = (type(_gen), type(_ids))
    for mn, ii in _dropped.items():  # first: a loaded module's name wins
        for i in ii.split():
            print("HD id", int(i, 16), "module", "dropped " + mn)
    for mn in list(sys.modules):
        m = sys.modules[mn]
        print("HD id", id(m), "module", mn)
        print("HD id", id(m.__dict__), "globals", mn)
        for n in dir(m):
            try:
                v = getattr(m, n)
            except Exception:  # noqa: BLE001 - a lazy name that does not load
                continue
            if isinstance(v, type):
                if getattr(v, "__module__", mn) != mn:
                    continue  # named by the module that defines it
                print("HD id", id(v), "class", mn + "." + n)
                for a in dir(v):
                    try:
                        f = getattr(v, a)
                    except Exception:  # noqa: BLE001
                        continue
                    if type(f) in fn:
                        print("HD id", id(f), "func", mn + "." + n + "." + a)
            elif type(v) in fn:
                print("HD id", id(v), "func", mn + "." + n)
    print("HD id", id(dict), "type", "dict")  # the binary's base address (PIE): the analysis finds mp_type_* by it


def _dump(arg):
    _ids()
    print("HD from", arg)
    gc.collect()
    micropython.qstr_info(1)
    micropython.mem_info(1)
    if arg.startswith("0x"):
        from binascii import hexlify

        addr, n = arg.split(":")
        n = int(n)
        ba = uctypes.bytearray_at(int(addr, 16), n)
        for i in range(0, n, 1024):
            print("HX", hexlify(ba[i : i + 1024]).decode())
    print("\nHD end")


def bare():
    """The dumps of a process that only imported the boot set: one per line
    of stdin ("map", then "0xADDR:LENGTH"), until an empty line."""
    while True:
        a = sys.stdin.readline().strip()
        if not a:
            break
        _dump(a)


board.on_control("heapdump", _dump)
