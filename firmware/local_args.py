# The local-port commands' argument checks (a bad argument is a ValueError
# the local port answers as an error reply). Loaded with the command modules
# that use them (all loaded on first use) and dropped after each command by
# app.Hub.run_command: no part of the boot import set.


def int_arg(req, name, lo, hi, default=None):
    """req[name] as an int in lo..hi (default when absent); ValueError else."""
    v = req.get(name, default)
    if v is None:
        raise ValueError("'%s' is missing" % name)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ValueError("'%s' must be an integer %d..%d" % (name, lo, hi))
    return v


def str_arg(req, name, max_len, default=None):
    v = req.get(name, default)
    if v is None:
        raise ValueError("'%s' is missing" % name)
    if not isinstance(v, str) or len(v) > max_len:
        raise ValueError("'%s' must be a string of at most %d characters" % (name, max_len))
    return v


def hex_arg(req, name, max_bytes, default=None):
    """req[name], hex text (spaces and colons allowed), as bytes."""
    from binascii import unhexlify

    v = str_arg(req, name, 3 * max_bytes + 2, default)
    try:
        b = unhexlify(v.replace(" ", "").replace(":", ""))
    except ValueError:
        raise ValueError("'%s' is not hex" % name)
    if len(b) > max_bytes:
        raise ValueError("'%s' is over %d bytes" % (name, max_bytes))
    return b


def eui_arg(req, name="eui"):
    """req[name], an EUI-64 as hex text -> 16 upper-case hex digits."""
    from ids import eui_hex

    v = req.get(name)
    if v is None:
        raise ValueError("'%s' is missing" % name)
    if not isinstance(v, str):
        raise ValueError("'%s' must be an EUI-64 as hex text" % name)
    try:
        return eui_hex(v)
    except ValueError as e:
        raise ValueError("'%s': %s" % (name, e))
