# One line per event on the console: "<ms> <source> <message>". The rig
# timestamps and prefixes these lines in the DUT log.
# The stamp is ms since boot (mono: right across the ticks wrap).
import sys

from mono import ms


def log(source, msg):
    print(ms(), source, msg)


def log_exc(source, exc):
    print(ms(), source, "error", repr(exc))
    sys.print_exception(exc)


class KindError(ValueError):
    """One class for a family of errors (han.ash's AshError, wan.link's
    LinkError, ...), raised as Family(kind, message, ...) or Family(kind):
    str() is the message ("" without one) and repr() reads as the class
    `kind` named before ("AshCrcError('bad CRC 1234',)", "NoSim()"), so
    logs, last_error and replies keep their text. One class costs RAM at
    import instead of one per kind."""

    def __str__(self):
        a = self.args
        return a[1] if len(a) > 1 else ""

    def __repr__(self):
        a = self.args
        return a[0] + ("(%r,)" % (a[1],) if len(a) > 1 else "()")


class KindException(Exception):
    """KindError's form for a family that is not a ValueError (wan.modem's
    ModemError)."""

    __str__ = KindError.__str__
    __repr__ = KindError.__repr__


def kind_of(e):
    """The name an error is shown by: its kind, or its class's name."""
    return e.args[0] if isinstance(e, (KindError, KindException)) else type(e).__name__
