# ruff: noqa: UP031
# The kept fuzz corpus of the hub's byte parsers (bench/fuzz_corpus/<name>/)
# replayed under MicroPython by the driver hil/campaign/fuzz.py runs
# (bench/mp_fuzz_parsers.py): no input crashes a parser, and each corpus
# still reaches the parser's success path and its main error classes.
import sys

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.append(_HERE + "/../../bench")

from mp_fuzz_parsers import replay  # noqa: E402

HEAP = "512k"  # compiling wan/sim7600.py from source needs more than 256k


def _check(name, need):
    n, crashes, seen = replay(name)
    assert not crashes, crashes[:3]
    assert n >= 50, "corpus %s has only %d inputs" % (name, n)
    for cls in need:
        assert cls in seen, "corpus %s never reaches %s (%r)" % (name, cls, list(seen))


def test_ash_corpus():
    _check("ash", ("ok", "AshCrcError"))


def test_ezsp_corpus():
    _check("ezsp", ("ok", "EzspTruncated", "EzspUnknownFrame"))


def test_zcl_corpus():
    _check("zcl", ("ok", "ZclTruncated"))


def test_tunnel_corpus():
    _check("tunnel", ("ok", "TunnelError"))


def test_at_corpus():
    _check("at", ("ok", "ATFormatError"))


def test_link_corpus():
    _check("link", ("ok", "BadMagic", "BadCrc"))


def test_local_port_corpus():
    _check("local_port", ("ok", "FrameError"))
