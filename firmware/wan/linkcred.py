# The head-end link's credentials on the hub (docs/headend-link.md): the link
# key pair (P-256, made on the hub; KV "link"), the TLS client certificate
# issued for it at provisioning (cert_chf_link.der) and the link anchor, the
# head-end link CA's certificate (cert_link_anchor.der): the hub accepts only
# a head-end whose certificate chains to it. TLS runs in the modem
# (AT+CCHxxx). The hub holds LinkCredentials (is all in place? which
# generation?); what is used on request (the key made on first use, a new
# pair installed (link_cert), the fingerprint and info (link_info), the PEM
# files the modem's TLS stack takes) is wan.linkfiles' functions of a
# LinkCredentials, loaded for the call and dropped after (firmware/lazy.py).
import os

from flag import Flag


class LinkCredentials:
    """LinkCredentials(store, identity): the CHF EUI-64 is identity.chf["eui"] (read at use:
    a provisioning may change it). `gen` counts the
    credentials installed since boot; `changed` (a Flag) is set when they
    change (the WAN session clears it as it makes the link, and a session
    made with older ones ends when it is set)."""

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
                os.stat("%s/cert_%s.der" % (self.store.root, n))  # wan.linkfiles.path
            except OSError:
                return False
        return self.kv.get("key") is not None

    def notify(self):
        """The credentials changed (installed, or applied by a provisioning)."""
        self.gen += 1
        self.changed.set()
