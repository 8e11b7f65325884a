# A value's JSON text, as MicroPython's json.dumps writes it (", " and ": "
# between items, strings in UTF-8 with \" \\ \n \r \t and \u00xx escaped,
# an int dict key in quotes), written in pieces: the local port's replies
# (local_port._reply_obj) need no block of their own size.
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

PIECE = const(256)  # the largest piece handed to the writer


class JsonOut:
    """JsonOut(check, crc, acc): `value(v, 0)` writes v's JSON text.

    First pass (before `start`): nothing is written, `total` counts the
    text's bytes and every string for which check(bytes) is false raises
    ValueError (check: a strict UTF-8 test, run only on strings with a byte
    over 0x7F); a value JSON has no form for raises TypeError. Then
    `start(writer, head, skip, frame_len)`, `value(v, 0)` again and
    `finish()`: head, the text and the checksum's two bytes (u16 BE) go to
    writer.write in pieces of at most PIECE bytes from one buffer (the
    writer takes each piece's bytes before returning); the checksum is
    crc(data, acc) chained over everything after head's first `skip` bytes."""

    def __init__(self, check, crc, acc):
        self.check = check
        self.crc = crc
        self.acc = acc
        self.w = None
        self.total = 0
        # every attribute set here, once: the instance's dict is not regrown
        self.cap = self.n = self.c0 = 0
        self.buf = self.mv = None

    def start(self, writer, head, skip, frame_len):
        self.w = writer
        # a short frame gets a buffer of its own size
        self.cap = cap = frame_len if frame_len < PIECE else PIECE
        self.buf = buf = bytearray(cap)
        self.mv = memoryview(buf)
        k = len(head)
        buf[0:k] = head
        self.n = k
        self.c0 = skip
        self.total = 0

    def _flush(self):
        n = self.n
        mv = self.mv
        self.acc = self.crc(mv[self.c0 : n], self.acc)
        self.c0 = 0
        self.w.write(mv[0:n])
        self.n = 0

    def finish(self):
        # the checksum after the text; the last piece out
        n = self.n
        acc = self.crc(self.mv[self.c0 : n], self.acc)
        if n + 2 > self.cap:
            self.w.write(self.mv[0:n])
            n = 0
        buf = self.buf
        buf[n] = acc >> 8
        buf[n + 1] = acc & 0xFF
        self.w.write(self.mv[0 : n + 2])

    def put(self, b):
        # b: bytes-like (a memoryview of a str: its UTF-8 bytes)
        k = len(b)
        self.total += k
        if self.w is None:
            return
        n = self.n
        cap = self.cap
        if n + k <= cap:
            self.buf[n : n + k] = b
            self.n = n + k
            return
        i = 0
        while i < k:
            if self.n == cap:
                self._flush()
            n = self.n
            m = k - i
            if m > cap - n:
                m = cap - n
            self.buf[n : n + m] = b[i : i + m]
            self.n = n + m
            i += m

    def string(self, s):
        mv = memoryview(s)
        self.put(b'"')
        if len(mv):
            if self.w is None and max(mv) > 0x7F and not self.check(mv):
                raise ValueError("not well-formed UTF-8")
            q, bs = (b'"', b"\\") if isinstance(s, bytes) else ('"', "\\")
            if q in s or bs in s or min(mv) < 0x20:
                self._escaped(mv)
            else:
                self.put(mv)
        self.put(b'"')

    def _escaped(self, mv):
        i = 0
        k = len(mv)
        for j in range(k):
            c = mv[j]
            if c >= 0x20 and c != 0x22 and c != 0x5C:
                continue
            if j > i:
                self.put(mv[i:j])
            i = j + 1
            if c == 0x22 or c == 0x5C:
                self.put(b"\\%c" % c)
            elif c == 0x0A:
                self.put(b"\\n")
            elif c == 0x0D:
                self.put(b"\\r")
            elif c == 0x09:
                self.put(b"\\t")
            else:
                self.put(b"\\u%04x" % c)
        if k > i:
            self.put(mv[i:k])

    def value(self, v, depth):
        if depth > 16:
            raise ValueError("nested too deeply")
        if v is None:
            self.put(b"null")
        elif v is True:
            self.put(b"true")
        elif v is False:
            self.put(b"false")
        elif isinstance(v, (str, bytes)):
            self.string(v)
        elif isinstance(v, int):
            self.put(b"%d" % v)
        elif isinstance(v, float):
            self.put(repr(v).encode())
        elif isinstance(v, dict):
            self.put(b"{")
            first = True
            for k in v:
                if not first:
                    self.put(b", ")
                first = False
                if isinstance(k, (str, bytes)):
                    self.string(k)
                else:
                    self.put(b'"')
                    self.value(k, depth + 1)
                    self.put(b'"')
                self.put(b": ")
                self.value(v[k], depth + 1)
            self.put(b"}")
        elif isinstance(v, (list, tuple)):
            self.put(b"[")
            first = True
            for x in v:
                if not first:
                    self.put(b", ")
                first = False
                self.value(x, depth + 1)
            self.put(b"]")
        else:
            raise TypeError("%s is not JSON" % type(v).__name__)
