# aiosmtpd server that saves each message's bytes (as received, after
# un-stuffing) to DIR/<n>.eml, for comparing what the parley client sent.
# usage: /usr/bin/python3 aiosmtpd_save.py DIR ; prints "PORT <n>" when ready,
# stops on SIGTERM (or after 60 s)
import asyncio, os, sys, socket
from aiosmtpd.controller import Controller

outdir = sys.argv[1]
count = 0

class Save:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += 1
        with open(os.path.join(outdir, "%03d.eml" % count), "wb") as f:
            f.write(envelope.original_content)
        with open(os.path.join(outdir, "%03d.env" % count), "w") as f:
            f.write(envelope.mail_from + "\n" + "\n".join(envelope.rcpt_tos) + "\n")
        return "250 OK saved"

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
c = Controller(Save(), hostname="127.0.0.1", port=port)
c.start()
print("PORT", port, flush=True)
import signal, threading
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: done.set())
done.wait(60)
c.stop()
