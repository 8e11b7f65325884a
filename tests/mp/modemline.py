# A stand-in for the modem's UART under the AT channel (wan.at.ATChannel),
# both its reader and its writer: answer(the bytes written) -> the modem's
# reply to them (b"" or None: none yet; reply() sends one later), read back
# in pieces of at most the size asked.
import asyncio


class Line:
    def __init__(self, answer):
        self.answer = answer
        self.ev = asyncio.Event()
        self.out = b""

    def write(self, b):
        self.reply(self.answer(bytes(b)))

    def reply(self, r):
        if r:
            self.out = r
            self.ev.set()

    async def drain(self):
        pass

    async def read(self, n):
        while not self.out:
            self.ev.clear()
            await self.ev.wait()
        o, self.out = self.out[:n], self.out[n:]
        return o
