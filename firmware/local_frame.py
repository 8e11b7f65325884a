# The local port's whole-frame codec (docs/local-port.md): one frame made
# from a body, the body of one complete frame. For clients and tests on the
# MicroPython side (the host's is chubcore.localport); the hub reads its
# frames with local_port.FrameReader and writes its replies itself, so it
# does not import this module.
from local_port import BAD_CRC, MAX_BODY, TOO_LONG, TRUNCATED, crc16


class FrameError(ValueError):
    """A malformed frame; `status` is the local-port status code."""

    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status


def encode_frame(body):
    """One frame carrying `body` (bytes-like, at most MAX_BODY bytes)."""
    n = len(body)
    if n > MAX_BODY:
        raise FrameError(TOO_LONG, "body of %d bytes is over %d" % (n, MAX_BODY))
    crc = crc16(body)
    out = bytearray(n + 5)
    out[0] = 0xC5  # SOF
    out[1] = n >> 8
    out[2] = n & 0xFF
    out[3 : 3 + n] = body
    out[3 + n] = crc >> 8
    out[4 + n] = crc & 0xFF
    return bytes(out)


def decode_frame(frame, max_body=MAX_BODY):
    """The body of one complete frame (no bytes before or after it)."""
    n = len(frame)
    if n < 5 or frame[0] != 0xC5:
        raise FrameError(TRUNCATED, "not a frame")
    size = (frame[1] << 8) | frame[2]
    if size > max_body:
        raise FrameError(TOO_LONG, "frame too long")
    if n != size + 5:
        raise FrameError(TRUNCATED, "frame length %d does not match header %d" % (n, size))
    mv = memoryview(frame)
    if crc16(mv[3 : 3 + size]) != (frame[n - 2] << 8) | frame[n - 1]:
        raise FrameError(BAD_CRC, "bad CRC")
    return mv[3 : 3 + size]
