# The head-end link's credentials on the hub (docs/headend-link.md): the link
# key pair (P-256, made on the hub; KV "link"), the TLS client certificate
# issued for it at provisioning (cert_chf_link.der) and the link anchor, the
# head-end link CA's certificate (cert_link_anchor.der): the hub accepts only
# a head-end whose certificate chains to it. TLS runs in the modem
# (AT+CCHxxx). The hub holds LinkCredentials (is all in place? which
# generation?); what is used on request (the key made on first use, a new
# pair installed, the fingerprint, the PEM files the modem's TLS stack takes)
# is wan.linkfiles, loaded for the call and dropped after (firmware/lazy.py).
import os

import lazy
from flag import Flag

_FILES = "wan.linkfiles"


def path(store, name, staged=False):
    """The certificate file `name` ("chf_link", "link_anchor") in the store's root."""
    return "%s/cert_%s.%s" % (store.root, name, "stg" if staged else "der")


class LinkCredentials:
    """LinkCredentials(store, identity): the CHF EUI-64 is identity.chf["eui"] (read at use:
    a provisioning may change it). `gen` counts the
    credentials installed since boot (a session made with older ones ends);
    `changed` (a Flag) is set when they change."""

    def __init__(self, store, identity, rand=os.urandom):
        self.store = store
        self.identity = identity
        self.rand = rand
        self.kv = store.kv("link", keep=False)
        self.gen = 0
        self.changed = Flag()

    def ready(self):
        """A key, a certificate and an anchor are in place."""
        for n in ("chf_link", "link_anchor"):
            try:
                os.stat(path(self.store, n))
            except OSError:
                return False
        return self.kv.get("key") is not None

    def notify(self):
        """The credentials changed (installed, or applied by a provisioning)."""
        self.gen += 1
        self.changed.set()

    def install(self, cert, anchor):
        """A new certificate and anchor (link_cert): wan.linkfiles.install."""
        try:
            return lazy.load(_FILES).install(self, cert, anchor)
        finally:
            lazy.drop(_FILES)

    def info(self):
        """link_info: {pub, cert, anchor, fingerprint} (wan.linkfiles.info)."""
        try:
            return lazy.load(_FILES).info(self)
        finally:
            lazy.drop(_FILES)
