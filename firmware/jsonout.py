# A value's JSON text, as MicroPython's json.dumps writes it (", " and ": "
# between items, strings in UTF-8 with \" \\ \n \r \t and \u00xx escaped,
# an int dict key in quotes), written in pieces: the local port's replies
# (local_port._handle) and the KV records (store.kv) need no block of
# their own size.
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

PIECE = const(256)  # the largest piece handed to the writer


# (isinstance with a tuple of types builds the tuple at each call: one test
# per type here)


class JsonOut:
    """JsonOut(check, crc, acc): `value(v, 0)` writes v's JSON text.

    First pass (before `start`): nothing is written, `total` counts the
    text's bytes and every string for which check(bytes) is false raises
    ValueError (check: a strict UTF-8 test, run only on strings with a byte
    over 0x7F); a value JSON has no form for raises TypeError. Then
    `start(writer, head, skip, frame_len)`, `value(v, 0)` again and
    `finish()`: head, the text and the checksum's two bytes (u16 BE) go to
    writer.write in pieces (`close()` instead: no checksum bytes; it returns
    the checksum) of at most PIECE bytes from one buffer (the
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
        if n < self.cap:
            mv = mv[0:n]
        self.acc = self.crc(mv[self.c0 :] if self.c0 else mv, self.acc)
        self.c0 = 0
        self.w.write(mv)
        self.n = 0

    def close(self):
        """The last piece out; the checksum (no bytes of it written)."""
        if self.n:
            self._flush()
        return self.acc

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
            if isinstance(s, str):
                esc = '"' in s or "\\" in s
            else:
                esc = b'"' in s or b"\\" in s
            if esc or min(mv) < 0x20:
                # the runs between the characters to escape as they are, each
                # of those escaped
                i = 0
                k = len(mv)
                for j in range(k):
                    c = mv[j]
                    if c >= 0x20 and c != 0x22 and c != 0x5C:
                        continue
                    if j > i:
                        self.put(mv[i:j])
                    i = j + 1
                    if c == 0x22:
                        self.put(b'\\"')
                    elif c == 0x5C:
                        self.put(b"\\\\")
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
            else:
                self.put(mv)
        self.put(b'"')

    def _int(self, v):
        # decimal digits written into the buffer: no text object per number
        if v < 0:
            self.put(b"-")
            v = -v
        if v > 0x3FFFFFFF:  # past a small int on a 32-bit port: arithmetic allocates anyway
            self.put(b"%d" % v)
            return
        k = 1
        t = v
        while t >= 10:
            t //= 10
            k += 1
        self.total += k
        if self.w is None:
            return
        if self.n + k > self.cap:
            self._flush()
        n = self.n + k
        self.n = n
        buf = self.buf
        while k:
            n -= 1
            buf[n] = 0x30 + v % 10
            v //= 10
            k -= 1

    def value(self, v, depth):
        if depth > 16:
            raise ValueError("nested too deeply")
        if v is None:
            self.put(b"null")
        elif v is True:
            self.put(b"true")
        elif v is False:
            self.put(b"false")
        elif isinstance(v, str) or isinstance(v, bytes):
            self.string(v)
        elif isinstance(v, int):
            self._int(v)
        elif isinstance(v, float):
            self.put(repr(v).encode())
        elif isinstance(v, dict):
            self.put(b"{")
            first = True
            for k in v:
                if not first:
                    self.put(b", ")
                first = False
                if isinstance(k, str) or isinstance(k, bytes):
                    self.string(k)
                else:
                    self.put(b'"')
                    self.value(k, depth + 1)
                    self.put(b'"')
                self.put(b": ")
                self.value(v[k], depth + 1)
            self.put(b"}")
        elif isinstance(v, list) or isinstance(v, tuple):
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
