# The local port's installer authentication (docs/local-port.md), loaded by
# the guard (local_port.guard) for the requests it does not let through
# unheard and dropped after (firmware/lazy.py): the hub holds only the state,
# local_port.InstallerAuth.
# Challenge-response with the installer credential K (32 bytes, written at
# provisioning; the emulated board has a factory test credential). The hub
# answers auth_challenge with a fresh nonce N; the client proves K with
# auth {mac: HMAC-SHA256(K, "chub-auth" | N)}; both then hold the session key
# S = HMAC-SHA256(K, "chub-session" | N). Every protected request carries
# "auth": [n, tag] with n > the last n of the session and tag = the first 16
# bytes of HMAC-SHA256(S, n as u32 BE | canonical(request)): the tag covers
# the command and every argument, so nothing a bystander saw on the line can
# be replayed or changed, and a later client without K gets nothing. A
# session ends after _SESSION_MS, after IDLE_MS without a request, at
# auth_end (tagged: only the session's holder ends it), at a successful new
# authentication or when the credential changes; a new challenge leaves it
# alone. A wrong credential, a bad or stale tag go to the security log
# (codes.EV_AUTH_FAILED); wrong credentials are slowed by a back-off that doubles
# with each one in a row (BACKOFF_MS .. BACKOFF_MAX_MS) and ends at a success.
# The functions answer a refusal as its text; the guard raises it as
# local_port.NotAuthorised (this module imports nothing of the local port).
from micropython import const
from binascii import unhexlify

import codes
import lazy
from gbcs.gcm import ct_equal
from log import log

_SESSION_MS = const(900000)
IDLE_MS = const(300000)
BACKOFF_MS = const(500)
BACKOFF_MAX_MS = const(30000)


def hmac_sha256(key, *parts):
    # gbcs.p256's HMAC-SHA256, p256 loaded for the call and dropped after
    # unless something held it before (~0.8 KB: it stayed after local_auth went)
    b = lazy.borrow("gbcs.p256")
    try:
        return lazy.load("gbcs.p256").hmac_sha256(key, *parts)
    finally:
        lazy.give_back(b)


def _qstr(s, out):
    # a string as its JSON text, in three pieces (no copy of a long value)
    t = s.replace("\\", "\\\\").replace('"', '\\"')
    # its bytes, not its characters: iterating a str interns each character
    # as a qstr, kept for good (a request's hex digits one by one)
    if t and min(memoryview(t)) < 0x20:  # control characters as \u00XX
        b = bytearray()
        for x in memoryview(t):
            if x < 0x20:
                b.extend(b"\\u00")
                b.extend(b"%02x" % x)
            else:
                b.append(x)
        t = b.decode()
    out.append('"')
    out.append(t)
    out.append('"')


def _canon(v, out, depth):
    if depth > 16:
        raise ValueError("request nested too deeply")
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append("%d" % v)
    elif isinstance(v, str):
        _qstr(v, out)
    elif isinstance(v, list):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _canon(x, out, depth + 1)
        out.append("]")
    elif isinstance(v, dict):
        out.append("{")
        first = True
        for k in sorted(v):
            if depth == 0 and k == "auth":
                continue
            if not first:
                out.append(",")
            first = False
            _qstr(k, out)
            out.append(":")
            _canon(v[k], out, depth + 1)
        out.append("}")
    else:
        raise ValueError("numbers in a request must be integers")


def canonical(req):
    """The canonical form of a request the installer's tag covers (bytes):
    the JSON object without its "auth" member, keys sorted at every level,
    no spaces, strings as UTF-8 with only \\ \" and control characters
    escaped (\\uXXXX, lower-case hex), integers in decimal; a float is refused
    (ValueError). docs/local-port.md; the client computes the same."""
    out = []
    _canon(req, out, 0)
    return "".join(out).encode()


def request_tag(session_key, n, req):
    """The tag of request `req` (a dict: cmd and arguments; its "auth" member
    is left out) with request number n."""
    # the canonical form's pieces (str: MicroPython's hashlib takes a str's
    # UTF-8 bytes as they are) go to the hash one by one: a request of a few
    # KB is not joined and encoded into two more copies of its size
    out = []
    _canon(req, out, 0)
    return hmac_sha256(session_key, bytes(((n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF)),
                       *out)[:16]


def backoff_ms(failures):
    """The wait after `failures` wrong credentials in a row."""
    if failures <= 0:
        return 0
    return min(BACKOFF_MS << min(failures - 1, 16), BACKOFF_MAX_MS)


def backoff_left_ms(auth):
    """ms until InstallerAuth `auth` hears a credential again (0: now)."""
    left = backoff_ms(auth.failures) - (auth.now_ms() - auth.wait_from)
    return left if left > 0 else 0


def _log(lg, code, data):
    if lg is not None:
        try:
            lg.append(code, data)
        except Exception as e:  # no clock yet, flash trouble: the console has it
            log("local", "auth event 0x%04X not logged: %r" % (code, e))


def _fail(auth, why):
    auth.failed += 1
    _log(auth.security_log, codes.EV_AUTH_FAILED, why)


def _answer(auth, req):
    # auth {mac}: the proof of the credential for the last challenge -> the
    # session's time to live (s), or the refusal's text
    v = req.get("mac")
    if v is None:
        raise ValueError("'mac' is missing")
    if not isinstance(v, str) or len(v) > 98:
        raise ValueError("'mac' must be a string of at most 98 characters")
    try:
        mac = unhexlify(v.replace(" ", "").replace(":", ""))
    except ValueError:
        raise ValueError("'mac' is not hex")
    if len(mac) > 32:
        raise ValueError("'mac' is over 32 bytes")
    nonce, auth.nonce = auth.nonce, None  # one try per challenge
    key = auth.get_key()
    if key is None:
        return "the hub has no installer credential: provision it first"
    if nonce is None:
        return "no challenge: call auth_challenge first"
    left = backoff_left_ms(auth)
    if left:
        auth.slowed += 1
        return "too many wrong credentials: wait %d ms" % left
    if not ct_equal(hmac_sha256(key, b"chub-auth", nonce), mac):
        auth.failures += 1
        auth.wait_from = auth.now_ms()
        _fail(auth, b"credential")
        return "wrong installer credential"
    auth.failures = 0
    t = auth.now_ms()
    auth.session = [hmac_sha256(key, b"chub-session", nonce), 0, t, t, key]
    _log(auth.event_log, codes.EV_LOCAL_PORT_SESSION, b"")
    return _SESSION_MS // 1000


def check(auth, req, cmd):
    """None when req carries a fresh tag of `auth`'s session, else the
    refusal's text."""
    s = auth.session
    if s is None:
        return "%s needs an authenticated installer (auth_challenge, auth)" % cmd
    t = auth.now_ms()
    if t - s[2] > _SESSION_MS or t - s[3] > IDLE_MS or s[4] != auth.get_key():
        auth.session = None
        return "the installer session has expired: authenticate again"
    a = req.get("auth")
    if not isinstance(a, list) or len(a) != 2 or not isinstance(a[0], int) or not isinstance(a[1], str):
        return "%s needs an installer session tag" % cmd
    n = a[0]
    if isinstance(n, bool) or n > 0xFFFFFFFF:
        return "bad request number"
    if n <= s[1]:
        _fail(auth, b"stale")
        return "stale request number"
    try:
        tag = bytes.fromhex(a[1])
    except ValueError:
        tag = b""
    if not ct_equal(request_tag(s[0], n, req), tag):
        _fail(auth, b"tag")
        return "bad session tag"
    s[1] = n
    s[3] = t
    return None


def guard(g, req, cmd):
    """The installer's part of guard `g` (local_port.guard) for a request it
    does not let through unheard -> (answer, refusal): the answer of an auth
    command (auth_challenge, auth, auth_end), else None (the command may
    run when refusal is None); refusal the text of a NotAuthorised."""
    auth = g.auth
    if cmd == "auth_challenge":
        key = auth.get_key()
        auth.nonce = bytes(auth.rand(16))
        return {"nonce": auth.nonce.hex(), "credential": key is not None}, None
    if cmd == "auth":
        r = _answer(auth, req)
        return (None, r) if isinstance(r, str) else ({"ttl_s": r}, None)
    if cmd == "auth_end":
        if auth.session is None:
            return {"ended": False}, None
        why = check(auth, req, cmd)  # only the session's holder ends it
        if why is not None:
            return None, why
        auth.end()
        return {"ended": True}, None
    if cmd in g.first_cmds and auth.get_key() is None:
        return None, None
    return None, check(auth, req, cmd)


def strings_strict(v, utf8_strict, depth=0):
    """Every string in a parsed request is strict UTF-8 by utf8_strict(b)
    (local_port's; JSON \\u escapes can make surrogates the byte check of the
    text did not see)."""
    if depth > 16:
        return False
    if isinstance(v, str):
        return len(v.encode()) == len(v) or utf8_strict(v.encode())
    if isinstance(v, dict):
        for k in v:
            if not strings_strict(k, utf8_strict, depth + 1) or not strings_strict(v[k], utf8_strict, depth + 1):
                return False
    elif isinstance(v, list):
        for x in v:
            if not strings_strict(x, utf8_strict, depth + 1):
                return False
    return True
