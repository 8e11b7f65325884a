# The local port's back-off against a guesser: the real installer guard and
# InstallerAuth (local_port.py) on the hub's clock (mono.ms), asked for a
# challenge and given a wrong answer as fast as the loop allows for 3.5 s.
# A wrong answer is checked (and logged) only when the back-off has run out;
# the figure is the most answers checked in any one second.
#   micropython bench/mp_auth.py  -> one JSON line
import asyncio
import json
import os

import local_port as lp
import mono

_RUN_MS = 3500


async def main():
    auth = lp.InstallerAuth(lambda: b"\x42" * 32, os.urandom, mono.ms)

    async def dispatch(req):
        return {}

    guard = lp.guard(dispatch, auth, (), (), ("status",))
    checked = []
    tries = 0
    t0 = mono.ms()
    while mono.ms() - t0 < _RUN_MS:
        await guard({"cmd": "auth_challenge"})
        tries += 1
        try:
            await guard({"cmd": "auth", "mac": "00" * 32})
        except lp.NotAuthorised as e:
            if "wrong installer credential" in str(e):
                checked.append(mono.ms())
        await asyncio.sleep_ms(0)
    peak = max(sum(1 for u in checked if t <= u < t + 1000) for t in checked) if checked else 0
    print(json.dumps({"auth_failures_per_s_max": peak, "auth_tries": tries, "auth_checked": len(checked)}))


asyncio.run(main())
