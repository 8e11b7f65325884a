# Routing by recipient EUI-64 and the GSME command buffer (docs/routing.md).
# install() loads route.router only when the hub installs it, after the
# features installed before it, so its code is not in the heap while they
# set up (first-boot key generation is the boot's heap peak).


def install(hub):
    from route import router

    return router.install(hub)
