# The remote-party trust anchor cells of one GBCS device (the CHF, or the
# GPF: Credentials(store, identity, "gpf")) and the security-credential use
# cases CS02a (Provide Security Credentials Details, 0x0008) and CS02b
# (Update Security Credentials: supplier by supplier 0x0102, network
# operator by network operator 0x0103, WAN provider by WAN provider 0x0105).
#
# A cell = (role, key usage, subject EUI-64, subject key identifier, public
# key[, cell usage]); cell usage 1 = prepayment top-up (a supplier KA cell of
# the GPF), absent = 0 management. Cells live in KV "ta_cells" (the CHF) /
# "ta_cells_<device>" (key "cells": [[role, usage, eui hex, ski hex, pub hex
# (, 1)]], key "seq": {role: floor sequence number, role + "/0": specialist
# floor (prepayment top-up)}). The management key agreement cells are also
# the trust anchors chf.identity gives to gbcs.security (Identity.set_anchors),
# so a KA replacement updates both.
#
# ASN.1 (DER) shapes, as in the RTDS:
#   CS02a command  SEQ { SEQ{role INT, keyUsage BIT STRING} authorising cell,
#                        SEQ OF role INT }
#   CS02a response SEQ OF SEQ { role INT, status ENUM
#                        [, seq INT, SEQ OF SEQ{keyUsage, OCTET eui, OCTET ski}] }
#   CS02b command  SEQ { SEQ{mode INT, [2]{role, keyUsage[, cellUsage]}, [3] seq,
#                        [4] floor, [5] SEQ OF SEQ{usage INT, seq INT}},
#                        SEQ OF SEQ{certificate, SEQ{role, keyUsage[, cellUsage]}},
#                        SEQ OF certificate (certification path) }
#   CS02b response SEQ { NULL, SEQ{seq INT, mode INT, SEQ OF SEQ{role, floor
#                        [, SEQ OF SEQ{usage, seq}]}, SEQ OF SEQ{SEQ{role,
#                        keyUsage[, cellUsage]}, status ENUM, OCTET existing
#                        eui, OCTET existing ski, OCTET new eui, OCTET new ski}} }
# A CS02b the device refuses as a whole (bad signature, wrong authorising
# cell, stale sequence number) raises CredentialError: the GBCS response has
# no "rejected" form (commandAccepted NULL, then the outcome), so nothing is
# answered; the caller security-logs it. A replacement whose certificate fails
# the checks is answered, with status Bad Certificate (5) for that cell.
from micropython import const

import lazy
from gbcs import der, p256
from ids import hex_bytes, hex_text

# the remote party roles: role number n is _ROLE_NAMES[n - 1] (constant
# tuples here are in flash when frozen; dicts would be built in RAM)
_ROLE_NAMES = const(("recovery", "supplier", "network_operator", "acb", "transitional_cos", "wan_provider"))
DS = const("ds")
KA = const("ka")

_MODE_SUPPLIER_BY_SUPPLIER = const(2)
_MODE_NETWORK_OPERATOR_BY_NETWORK_OPERATOR = const(3)
_MODE_WAN_PROVIDER_BY_WAN_PROVIDER = const(5)


def _mode_role(mode):
    # credentials replacement mode -> the role it replaces (and that
    # authorises it), None for another mode
    if mode == _MODE_SUPPLIER_BY_SUPPLIER:
        return "supplier"
    if mode == _MODE_NETWORK_OPERATOR_BY_NETWORK_OPERATOR:
        return "network_operator"
    if mode == _MODE_WAN_PROVIDER_BY_WAN_PROVIDER:
        return "wan_provider"
    return None


def _mc_mode(mc):
    # CS02b message code -> its replacement mode
    if mc == 0x0102:
        return _MODE_SUPPLIER_BY_SUPPLIER
    if mc == 0x0103:
        return _MODE_NETWORK_OPERATOR_BY_NETWORK_OPERATOR
    if mc == 0x0105:
        return _MODE_WAN_PROVIDER_BY_WAN_PROVIDER
    return None


_CELL_MANAGEMENT = const(0)
CELL_TOP_UP = const(1)  # prepayment top-up
# StatusCode (GBCS ASN.1, CS02a/CS02b responses)
ST_SUCCESS = const(0)
_ST_BAD_CERTIFICATE = const(5)
_ST_NO_TRUST_ANCHOR = const(10)
ST_TA_NOT_FOUND = const(25)  # Trust Anchor Not Found
_ST_OTHER = const(127)

_OID_UNIQUE_ID = b"\x55\x04\x2d"  # 2.5.4.45 (subject EUI-64 as BIT STRING)
_OID_OU = b"\x55\x04\x0b"
_OID_SKI = b"\x55\x1d\x0e"
_OID_KEY_USAGE = b"\x55\x1d\x0f"


class CredentialError(ValueError):
    pass


def _role_name(n):
    # a role number -> its name, None when it is none
    return _ROLE_NAMES[n - 1] if 1 <= n <= len(_ROLE_NAMES) else None


def _usage_bits(usage):
    # a key usage's BIT STRING contents
    if usage == DS:
        return b"\x07\x80"
    if usage == KA:
        return b"\x03\x08"
    raise KeyError(usage)


def _usage_of(bits):
    b = bytes(bits)
    if b == b"\x07\x80":
        return DS
    if b == b"\x03\x08":
        return KA
    raise CredentialError("unsupported key usage %s" % hex_text(b))


def _int(node, what):
    if node[0] != der.INTEGER:
        raise CredentialError("%s is not an INTEGER" % what)
    return der.to_int(node[1])


def _cell_id(node):
    """SEQ/[n] {role INT, keyUsage BIT STRING [, cellUsage INT]} -> (role,
    usage, cell usage)."""
    if not node[0] & 0x20 or len(node[1]) < 2 or node[1][1][0] != der.BIT_STRING:
        raise CredentialError("bad trust anchor cell identifier")
    role = _role_name(_int(node[1][0], "role"))
    if role is None:
        raise CredentialError("unknown remote party role")
    cu = _int(node[1][2], "cell usage") if len(node[1]) > 2 else _CELL_MANAGEMENT
    if cu not in (_CELL_MANAGEMENT, CELL_TOP_UP):
        raise CredentialError("unknown cell usage %d" % cu)
    return role, _usage_of(node[1][1][1]), cu


def _cell_der(role, usage, cu):
    parts = [der.integer(_ROLE_NAMES.index(role) + 1), (der.BIT_STRING, _usage_bits(usage))]
    if cu != _CELL_MANAGEMENT:
        parts.append(der.integer(cu))
    return der.sequence(*parts)


def _cu(c):
    return c[5] if len(c) > 5 else _CELL_MANAGEMENT


class Certificate:
    """The parts of a remote-party X.509 certificate the CHF needs. Raises
    CredentialError for anything malformed."""

    def __init__(self, data, ca=False):
        try:
            self._parse(data, ca)
        except (IndexError, TypeError, AttributeError, KeyError) as e:
            raise CredentialError("certificate: malformed (%s)" % type(e).__name__)
        except der.DerError as e:
            raise CredentialError("certificate: %s" % e)

    def _parse(self, data, ca):
        mv = memoryview(data)
        try:
            tag, s, e = der.read_tlv(mv, 0, len(mv))
            if tag != der.SEQUENCE or e != len(mv):
                raise CredentialError("certificate is not one SEQUENCE")
            tag, ts, te = der.read_tlv(mv, s, e)
            self.tbs = bytes(mv[s:te])  # the signed TBSCertificate, header included
            cert = der.decode(mv)
        except der.DerError as e:
            raise CredentialError("certificate: %s" % e)
        if cert[0] != der.SEQUENCE or len(cert[1]) != 3 or cert[1][2][0] != der.BIT_STRING:
            raise CredentialError("certificate: want tbs, algorithm, signature")
        tbs = cert[1][0][1]
        self.signature = _ecdsa_rs(cert[1][2][1][1:])
        i = 1 if tbs[0][0] == 0xA0 else 0  # optional [0] version
        if len(tbs) < i + 7:
            raise CredentialError("certificate: short TBSCertificate")
        self.eui = None
        self.ou = None
        for rdn in tbs[i + 4][1]:
            for atv in rdn[1]:
                oid, val = bytes(atv[1][0][1]), atv[1][1]
                if oid == _OID_UNIQUE_ID and len(val[1]) == 9:
                    self.eui = bytes(val[1][1:])
                elif oid == _OID_OU:
                    self.ou = bytes(val[1])
        if self.eui is None and not ca:
            raise CredentialError("certificate: no subject EUI-64 (2.5.4.45)")
        spki = tbs[i + 5][1]
        self.pub = bytes(spki[1][1][1:])
        try:
            p256.decode_point(self.pub)
        except (ValueError, TypeError):
            raise CredentialError("certificate: public key is not a P-256 point")
        self.ski = None
        self.usage = None
        for ext in tbs[-1][1][0][1] if tbs[-1][0] == 0xA3 else ():
            oid, val = bytes(ext[1][0][1]), ext[1][-1][1]
            inner = der.decode(val)
            if oid == _OID_SKI:
                self.ski = bytes(inner[1])
            elif oid == _OID_KEY_USAGE and not ca:
                self.usage = _usage_of(inner[1])
        if not ca and (self.ski is None or self.usage is None):
            raise CredentialError("certificate: no key usage or subject key identifier")

    def signed_by(self, pub):
        return p256.verify(pub, self.tbs, self.signature)


def _ecdsa_rs(sig):
    """DER ECDSA-Sig-Value -> r||s (64 bytes)."""
    try:
        v = der.decode(sig)
        r, s = der.to_int(v[1][0][1]), der.to_int(v[1][1][1])
    except (der.DerError, IndexError):
        raise CredentialError("certificate: bad ECDSA signature")
    if not (0 < r < 1 << 256 and 0 < s < 1 << 256):
        raise CredentialError("certificate: bad ECDSA signature")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class Credentials:
    """Credentials(store, identity, device="chf"): the cells of one device
    (KV "ta_cells" for the CHF, "ta_cells_<device>" for another)."""

    def __init__(self, store, identity, device="chf"):
        # cold (no RAM copy): read only by rare commands (CS02a-e, a signature check)
        self._kv = store.kv("ta_cells" if device == "chf" else "ta_cells_" + device, keep=False)
        self.identity = identity
        self.device = device

    def cells(self):
        return [tuple(c) for c in self._kv.get("cells", [])]

    def cell(self, role, usage, cu=_CELL_MANAGEMENT):
        for c in self.cells():
            if c[0] == role and c[1] == usage and _cu(c) == cu:
                return c
        return None

    def seq(self, role):
        return int(self._kv.get("seq", {}).get(role, 0))

    def ds_pub_for(self, eui):
        h = hex_text(eui)
        for c in self.cells():
            if c[1] == DS and c[2] == h and _cu(c) == _CELL_MANAGEMENT:
                return hex_bytes(c[4])
        return None

    def provision(self, anchors):
        """Cells from the rig's/installer's anchor list: [{eui, role, ka_pub,
        ka_ski, ds_pub, ds_ski, pp_ka_pub, pp_ka_ski}] (hex; each part
        optional; pp_ka = the prepayment top-up KA cell)."""
        cells = []
        for a in anchors:
            role = a.get("role")
            if role not in _ROLE_NAMES:
                raise CredentialError("unknown role %r" % role)
            for name, usage, cu in ((DS, DS, 0), (KA, KA, 0), ("pp_ka", KA, CELL_TOP_UP)):
                pub = a.get(name + "_pub")
                if pub:
                    p256.decode_point(hex_bytes(pub))
                    c = [role, usage, a["eui"].lower(), (a.get(name + "_ski") or "").lower(), pub.lower()]
                    cells.append(c + [cu] if cu else c)
        self._kv.set("cells", cells)

    # --- CS02a ----------------------------------------------------------------

    def provide_details(self, payload):
        """CS02a: DER response bytes. Raises CredentialError on a bad command."""
        try:
            cmd = der.decode(payload)
            if cmd[0] != der.SEQUENCE or len(cmd[1]) != 2 or cmd[1][1][0] != der.SEQUENCE:
                raise CredentialError("CS02a: want SEQ{cell, SEQ OF role}")
            _cell_id(cmd[1][0])
            roles = [_int(r, "role") for r in cmd[1][1][1]]
        except (der.DerError, IndexError, TypeError, AttributeError) as e:
            raise CredentialError("CS02a: %s" % e)
        out = []
        for r in roles:
            name = _role_name(r)
            rows = [c for c in self.cells() if c[0] == name] if name else []
            if not rows:
                out.append(der.sequence(der.integer(r), der.enumerated(ST_TA_NOT_FOUND)))
                continue
            rows.sort(key=lambda c: (0 if c[1] == DS else 1, _cu(c)))
            details = [
                der.sequence(
                    *(
                        [(der.BIT_STRING, _usage_bits(c[1]))]
                        + ([der.integer(_cu(c))] if _cu(c) else [])
                        + [der.octets(hex_bytes(c[2])), der.octets(hex_bytes(c[3]))]
                    )
                )
                for c in rows
            ]
            out.append(
                der.sequence(
                    der.integer(r), der.enumerated(ST_SUCCESS), der.integer(self.seq(name)), (der.SEQUENCE, details)
                )
            )
        return der.encode((der.SEQUENCE, out))

    def authorising_cell(self, payload):
        """(role, usage) of the CS02a authorising cell (for the caller's
        check against how the command was protected)."""
        try:
            cmd = der.decode(payload)
            if cmd[0] != der.SEQUENCE:
                raise CredentialError("CS02a: not a SEQUENCE")
            return _cell_id(cmd[1][0])[:2]
        except (der.DerError, IndexError, TypeError, AttributeError) as e:
            raise CredentialError("CS02a: %s" % e)

    # --- CS02b ----------------------------------------------------------------

    def parse_update(self, payload):
        """-> (mode, authorising (role, usage, cell usage), seq, floor,
        [(usage, specialist floor)] or None, [(Certificate, (role, usage, cell
        usage))], [path Certificate]). Raises CredentialError."""
        try:
            cmd = der.decode(payload)
            if cmd[0] != der.SEQUENCE or not cmd[1][0][0] & 0x20 or not cmd[1][1][0] & 0x20:
                raise CredentialError("CS02b: want SEQ{control, replacements, path}")
            ctl, reps = cmd[1][0][1], cmd[1][1][1]
            path = cmd[1][2][1] if len(cmd[1]) > 2 else []
            mode = _int(ctl[0], "mode")
            auth = seq = floor = special = None
            for n in ctl[1:]:
                if n[0] == 0xA2:
                    auth = _cell_id(n)
                elif n[0] == 0x83:
                    seq = der.to_int(n[1])
                elif n[0] == 0x84:
                    floor = der.to_int(n[1])
                elif n[0] == 0xA5:
                    special = [(_int(x[1][0], "seq number usage"), _int(x[1][1], "seq number")) for x in n[1]]
            if auth is None or seq is None:
                raise CredentialError("CS02b: no authorising cell or sequence number")
            out = []
            for rep in reps:
                out.append((Certificate(der.encode(rep[1][0])), _cell_id(rep[1][1])))
            certs = [Certificate(der.encode(c), ca=True) for c in path]
        except (der.DerError, IndexError, TypeError, AttributeError) as e:
            raise CredentialError("CS02b: %s" % e)
        return mode, auth, seq, floor, special, out, certs

    def update(self, payload, originator, signature_ok, message_code=None):
        """CS02b in the modes of _mode_role (supplier by supplier, network operator
        by network operator, WAN provider by WAN provider): the current
        management DS cell of the mode's role must be the originator's and
        sign the command, its sequence number must be above the stored floor.
        signature_ok(pub) -> bool checks the command's signature with a DS
        key; message_code, when given, must name the same mode. Returns the
        DER response bytes; raises CredentialError when the command is
        refused as a whole (nothing changed)."""
        mode, auth, seq, floor, special, reps, path = self.parse_update(payload)
        role = _mode_role(mode)
        if role is None or (message_code is not None and _mc_mode(message_code) != mode):
            raise CredentialError("CS02b: replacement mode %d not supported for this message code" % mode)
        if auth != (role, DS, _CELL_MANAGEMENT):
            raise CredentialError("CS02b: the authorising cell is not the %s's signing cell" % role)
        cur = self.cell(role, DS)
        if cur is None or hex_bytes(cur[2]) != bytes(originator):
            raise CredentialError("CS02b: originator is not the current %s" % role)
        if not signature_ok(hex_bytes(cur[4])):
            raise CredentialError("CS02b: bad signature from the %s" % role)
        if seq <= self.seq(role):
            raise CredentialError("CS02b: sequence number %d not above %d" % (seq, self.seq(role)))
        outcomes = []
        cells = [list(c) for c in self.cells()]
        for cert, (r, usage, cu) in reps:
            old = self.cell(r, usage, cu)
            if r != role:
                st = _ST_OTHER  # the mode replaces only its own role's cells
            elif cert.usage != usage or cert.ou != b"%02d" % (_ROLE_NAMES.index(r) + 1) or (path and not cert.signed_by(path[0].pub)):
                st = _ST_BAD_CERTIFICATE
            else:
                st = ST_SUCCESS
                cells = [c for c in cells if not (c[0] == r and c[1] == usage and _cu(c) == cu)]
                c = [r, usage, hex_text(cert.eui), hex_text(cert.ski), hex_text(cert.pub)]
                cells.append(c + [cu] if cu else c)
            outcomes.append(
                der.sequence(
                    _cell_der(r, usage, cu),
                    der.enumerated(st),
                    der.octets(hex_bytes(old[2]) if old else b""),
                    der.octets(hex_bytes(old[3]) if old else b""),
                    der.octets(cert.eui),
                    der.octets(cert.ski),
                )
            )
        seqs = dict(self._kv.get("seq", {}))
        seqs[role] = seq if floor is None else floor
        change = [der.integer(_ROLE_NAMES.index(role) + 1), der.integer(seqs[role])]
        if special is not None:
            for usage, n in special:
                seqs["%s/%d" % (role, usage)] = n
            change.append(der.sequence(*[der.sequence(der.integer(u), der.integer(n)) for u, n in special]))
        self._kv.update({"cells": cells, "seq": seqs})
        self._sync_identity(cells)
        return der.encode(
            der.sequence(
                (der.NULL, b""),
                der.sequence(
                    der.integer(seq),
                    der.integer(mode),
                    der.sequence(der.sequence(*change)),
                    (der.SEQUENCE, outcomes),
                ),
            ),
            wide=True,  # lengths from 128 as 82 hi lo, as in the RTDS responses
        )

    def answer_update(self, f, ds_private, date_time):
        """CS02b for the parsed, authenticated command f: the update, then
        the response signed with the device's DS key (not MAC'd) with the
        grouping-header date_time. Raises CredentialError (nothing changed)."""
        from gbcs import frame as gframe

        def sig_ok(pub):
            return f.signature is not None and p256.verify(pub, f.signed_data(), f.signature)

        payload = self.update(f.payload, f.originator, sig_ok, f.message_code)
        parties = self.identity.parties(self.device)
        try:
            return bytes(
                lazy.load("gbcs.signed").protect_signed(
                    parties, gframe.CRA_RESPONSE, f.counter, f.originator, f.message_code, payload, ds_private,
                    date_time=date_time
                )
            )
        finally:
            lazy.drop("gbcs.signed")  # signatures on frames: loaded for the use

    def _sync_identity(self, cells):
        """Keep Identity's anchors (KA keys, originator EUIs) in step with
        the cells of each role."""
        if self.identity is None:
            return
        anchors = self.identity.anchors(self.device)
        changed = False
        for a in anchors:
            for c in cells:
                if _cu(c) != _CELL_MANAGEMENT:
                    continue
                if c[0] == a["role"] and c[1] == KA and a.get("ka_pub") != c[4]:
                    a["ka_pub"], a["eui"], changed = c[4], c[2], True
                elif c[0] == a["role"] and c[1] == DS and not a.get("ka_pub") and a["eui"] != c[2]:
                    a["eui"], changed = c[2], True
        if changed:
            self.identity.set_anchors(anchors, self.device)
