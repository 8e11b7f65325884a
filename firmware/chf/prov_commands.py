# The provisioning and head-end link commands of the local port (fn(hub,
# req): docs/local-port.md; the protocol is chf.provision's): loaded for
# each call and dropped after it (chf.provision.COMMANDS names this module;
# app.Hub.run_command loads it). The provisioning run's state is
# hub.provisioning (chf.provision_steps, dropped at the run's end).
import lazy

_PS = "chf.prov_store"


def _board():
    try:
        import board

        return board
    except ImportError:  # tests with a Hub-like object
        return None


def _prov(hub):
    p = hub.provisioning  # chf.provision_steps.Provisioning while a run is open
    if p is None:
        from chf.provision_steps import Provisioning

        board = _board()
        p = hub.provisioning = Provisioning(hub.store, hub.identity, hub.chf,
                                            utc=board.utc if board is not None else None)
    return p


async def prov_info(hub, req):
    try:
        return lazy.load(_PS).info(hub.store)
    finally:
        lazy.drop(_PS)


async def prov_begin(hub, req):
    return _prov(hub).begin(req)


async def prov_stage(hub, req):
    return _prov(hub).stage(req)


async def prov_commit(hub, req):
    res = _prov(hub).commit(req)
    hub.wan.link.notify()  # a new head-end link key, certificate and anchor: the WAN reconnects with them
    hub.installer_auth.end()  # the credential changed: the next request authenticates anew
    _end(hub)
    return res


async def prov_abort(hub, req):
    res = _prov(hub).abort()
    _end(hub)  # the run is over (its state is in KV "prov"): as at commit
    return res


def _end(hub):
    # the run is over: the steps module's objects go, then the module
    # (firmware/lazy.py) with what it imported: chf.prov_store, and gbcs.p256
    # (~0.8 KB) unless a module that imports it is held
    import sys

    hub.provisioning = None
    lazy.drop("chf.provision_steps")
    lazy.drop(_PS)
    if not any(m in sys.modules for m in ("chf.credentials", "gpf.function", "gbcs.signed")):
        lazy.drop("gbcs.p256")


async def link_info(hub, req):
    # {pub, cert, anchor, fingerprint}: wan.linkfiles, loaded for the call
    try:
        return lazy.load("wan.linkfiles").info(hub.wan.link)
    finally:
        lazy.drop("wan.linkfiles")


async def link_cert(hub, req):
    # a new certificate and anchor: wan.linkfiles.install, then link_info's answer
    from ids import hex_bytes

    try:
        lf = lazy.load("wan.linkfiles")
        lf.install(hub.wan.link, hex_bytes(req.get("cert"), "cert"), hex_bytes(req.get("anchor"), "anchor"))
        return lf.info(hub.wan.link)
    finally:
        lazy.drop("wan.linkfiles")


async def console_release(hub, req):
    # installer only: stop the hub and leave the console to the REPL so
    # that `chub flash` can copy a new app (boards with a REPL console)
    import asyncio

    board = _board()
    fn = board.release_console if board is not None else None
    if fn is None:
        raise ValueError("this board's console is not shared with a REPL")

    async def later():
        await asyncio.sleep_ms(200)  # the reply leaves first
        fn()

    asyncio.create_task(later())
    return {"released": True}


COMMANDS = (("console_release", console_release), ("prov_info", prov_info), ("prov_begin", prov_begin),
            ("prov_stage", prov_stage), ("prov_commit", prov_commit), ("prov_abort", prov_abort),
            ("link_info", link_info), ("link_cert", link_cert))
