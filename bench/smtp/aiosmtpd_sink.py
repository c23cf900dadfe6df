# aiosmtpd with a do-nothing handler, for the benchmark. usage: aiosmtpd_sink.py PORT
import sys, asyncio
from aiosmtpd.smtp import SMTP
class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: SMTP(Sink(), hostname="bench.aiosmtpd"), "127.0.0.1", int(sys.argv[1]))
    print("listening", flush=True)
    await srv.serve_forever()
asyncio.run(main())
