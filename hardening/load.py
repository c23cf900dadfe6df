#!/usr/bin/python3
"""Load peers for spec/hardening/load_spec.lua (an independent client:
Python's asyncio, not parley). Prints one line of key=value results.

  load.py idle PORT N          N idle connections, then one SMTP session:
                               its time (greeting to 221)
  load.py slowloris PORT N     N HTTP clients sending a head one byte every
                               0.3 s: seconds until the server drops each
  load.py smtp PORT N RCPT     N concurrent SMTP sessions, one message each:
                               how many got 250
"""
import asyncio, resource, sys, time

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def reply(r):
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


async def idle(port, n):
    conns = []
    for i in range(n):
        conns.append(await asyncio.open_connection("127.0.0.1", port))
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    assert (await reply(r)).startswith(b"220")
    w.write(b"EHLO load\r\n")
    assert (await reply(r)).startswith(b"250")
    w.write(b"QUIT\r\n")
    assert (await reply(r)).startswith(b"221")
    took = time.monotonic() - t0
    alive = 0
    for cr, cw in conns:
        alive += 0 if cr.at_eof() else 1
        cw.close()
    print(f"idle={n} alive={alive} normal_session={took:.3f}")


async def slowloris(port, n):
    async def one():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        for b in head:
            w.write(bytes([b]))
            try:
                await asyncio.wait_for(r.read(1 << 16), 0.3)
                break          # the server answered (408) or closed
            except asyncio.TimeoutError:
                pass
            except ConnectionError:
                break
        rest = await r.read()
        w.close()
        return time.monotonic() - t0
    ts = await asyncio.gather(*[one() for _ in range(n)])
    print(f"slowloris={n} dropped_min={min(ts):.2f} dropped_max={max(ts):.2f}")


async def smtp(port, n, rcpt):
    async def one(i):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            last = await reply(r)
            for cmd in (b"EHLO load", b"MAIL FROM:<l@load>", b"RCPT TO:<" + rcpt.encode() + b">", b"DATA"):
                if not last[:1] in (b"2", b"3"):
                    break
                w.write(cmd + b"\r\n")
                last = await reply(r)
            if last.startswith(b"354"):
                w.write(b"Subject: load %d\r\n\r\nmessage %d\r\n.\r\n" % (i, i))
                last = await reply(r)
            w.write(b"QUIT\r\n")
            w.close()
            return "250" if last.startswith(b"250") else (cmd.decode() + " -> " + last.decode(errors="replace").strip())[:60]
        except (ConnectionError, OSError) as e:
            return type(e).__name__
    res = await asyncio.gather(*[one(i) for i in range(n)])
    why = {}
    for r in res:
        why[r] = why.get(r, 0) + 1
    print(f"sessions={n} ok250={why.pop('250', 0)} others: {why}")


mode, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if mode == "idle":
    asyncio.run(idle(port, n))
elif mode == "slowloris":
    asyncio.run(slowloris(port, n))
else:
    asyncio.run(smtp(port, n, sys.argv[4]))
