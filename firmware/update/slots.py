# The boot chooser (docs/firmware-update.md): main.py calls boot() before it
# imports the hub. The flash holds up to two installed images, slots "a" and
# "b" under ROOT/img/, beside the image the board booted from (the factory
# image: the image folder on the unix board, the frozen app on the ESP32).
# ROOT/img/boot.json says which slot is active (None: the factory image) and
# which one is on trial (a new image's first boot). A trial gets one boot:
# boot() counts it, and when the hub does not confirm the trial
# (update.image.Updater.confirm, after READY and its self-check) the next
# boot runs the active image again and notes the rollback for the hub to
# report. Every boot checks the chosen slot's files against its manifest
# (SHA-256 each); a slot that fails is not run (noted the same way).
# Only os, sys, json and hashlib here: this runs before any hub module loads.
import hashlib
import json
import os
import sys

DIR = "img"
STATE = "boot.json"
HEAD = "HEAD"  # the image's header, manifest and signature as received
_BUF = 1024


def _read_json(path):
    try:
        with open(path) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def read_state(root):
    d = _read_json("%s/%s/%s" % (root, DIR, STATE)) or {}
    return {
        "active": d.get("active") if d.get("active") in ("a", "b") else None,
        "trial": d.get("trial") if d.get("trial") in ("a", "b") else None,
        "tries": d.get("tries") if isinstance(d.get("tries"), int) else 0,
        "notes": d.get("notes") if isinstance(d.get("notes"), list) else [],
    }


def write_state(root, st):
    # atomic: the new state in a tmp file, then renamed over the old one
    path = "%s/%s/%s" % (root, DIR, STATE)
    with open(path + ".tmp", "w") as f:
        json.dump(st, f)
    os.rename(path + ".tmp", path)


def manifest(root, slot):
    """The slot's manifest (dict) from its HEAD file, or None."""
    try:
        with open("%s/%s/%s/%s" % (root, DIR, slot, HEAD), "rb") as f:
            head = f.read()
        m = (head[6] << 8) | head[7]
        return json.loads(head[8:8 + m])
    except (OSError, ValueError, IndexError):
        return None


def check_slot(root, slot):
    """True when every file of the slot's manifest is there with its size and
    SHA-256 (the power-on verification)."""
    m = manifest(root, slot)
    if not m or not isinstance(m.get("files"), list):
        return False
    buf = bytearray(_BUF)
    mv = memoryview(buf)
    try:
        for name, size, digest in m["files"]:
            h = hashlib.sha256()
            n = 0
            with open("%s/%s/%s/%s" % (root, DIR, slot, name), "rb") as f:
                while True:
                    k = f.readinto(buf)
                    if not k:
                        break
                    h.update(mv[:k])
                    n += k
            if n != size or _hex(h.digest()) != digest:
                return False
    except (OSError, ValueError, TypeError):
        return False
    return True


def _hex(b):
    return "".join("%02x" % x for x in b)


def _version(root, slot):
    m = manifest(root, slot)
    return m.get("version", "?") if m else "?"


def choose(root):
    """The slot to run (None: the factory image), with boot.json updated:
    a trial's boot counted, an unconfirmed trial rolled back, a slot that
    fails its check dropped. Notes for the hub: ["rollback", version] and
    ["bad_slot", version]."""
    st = read_state(root)
    changed = False
    if st["trial"]:
        if st["tries"] >= 1:  # its one boot happened and the hub never confirmed it
            st["notes"].append(["rollback", _version(root, st["trial"])])
            st["trial"], st["tries"] = None, 0
        else:
            st["tries"] = 1
        changed = True
    slot = st["trial"] or st["active"]
    while slot and not check_slot(root, slot):
        st["notes"].append(["bad_slot", _version(root, slot)])
        if slot == st["trial"]:
            st["trial"], st["tries"] = None, 0
        else:
            st["active"] = None
        slot = st["trial"] or st["active"]
        changed = True
    if changed:
        write_state(root, st)
    return slot


def boot():
    """Mount the flash, choose the image and put its folder first on
    sys.path; returns the slot (None: the factory image)."""
    import board

    root = board.mount()
    try:
        os.stat("%s/%s" % (root, DIR))
    except OSError:
        return None  # nothing was ever installed
    slot = choose(root)
    if slot:
        sys.path.insert(0, "%s/%s/%s" % (root, DIR, slot))
    # the chooser's own package goes: the chosen image brings its own
    for name in ("update.slots", "update"):
        sys.modules.pop(name, None)
    return slot
