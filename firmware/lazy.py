# Features used only on request (the meter OTA server, the hub update's
# commands, the head-end's management channel, the rig's hooks) stay out of
# the hub's boot import set: the wiring (app.py) keeps a small entry that
# loads the feature's module on the first request, and drops it again when
# the feature is idle, so its heap (module dict, functions, classes) comes
# back. docs/architecture.md, "Features loaded on first use".
import gc
import sys


def load(name):
    """The module `name` (dotted: the submodule itself), imported if it is
    not loaded."""
    m = sys.modules.get(name)
    if m is None:
        m = __import__(name, None, None, (name[name.rfind(".") + 1:],))
    return m


def drop(name, collect=True):
    """Forget module `name`: its sys.modules entry and the attribute its
    import set on the parent package, then collect (collect=False: at the
    next collection). Its heap comes back once nothing else holds its
    objects (the caller drops its own first). -> False if it was not
    loaded."""
    if sys.modules.pop(name, None) is None:
        return False
    i = name.rfind(".")
    if i > 0:
        parent = sys.modules.get(name[:i])
        if parent is not None:
            try:
                delattr(parent, name[i + 1:])
            except AttributeError:
                pass
    if collect:
        gc.collect()
    return True


def borrow(*names):
    """Of `names`, the modules not loaded now: what a call that loads them
    gives back after it (give_back). One loaded before is another part's
    and stays: dropping it would make a second copy at its next load, whose
    classes an `except` holding the first's would not match."""
    return [n for n in names if n not in sys.modules]


def give_back(names):
    """Drop each module of `names` (borrow's list); its heap comes back at
    the next collection."""
    for n in names:
        drop(n, False)


def command(name, cmd):
    """The command function `cmd` from module `name`'s COMMANDS, the module
    loaded if it is not (a local-port command served on first use)."""
    for n, fn in load(name).COMMANDS:
        if n == cmd:
            return fn
    raise KeyError(cmd)
