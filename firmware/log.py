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
    LinkError, ...), raised as Family(kind, message, ...): str() is the message
    and repr() reads as the class `kind` named before ("AshCrcError('bad
    CRC 1234',)"), so logs, last_error and replies keep their text. One
    class costs RAM at import instead of one per kind."""

    def __str__(self):
        return self.args[1]

    def __repr__(self):
        a = self.args
        return "%s(%r,)" % (a[0], a[1])


def kind_of(e):
    """The name an error is shown by: its kind, or its class's name."""
    return e.args[0] if isinstance(e, KindError) else type(e).__name__
