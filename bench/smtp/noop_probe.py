#!/usr/bin/python3
# A light SMTP client beside the load: one session sending NOOP every
# 10 ms for `seconds`; prints "median_ms p99_ms max_ms count" of the
# round trips (how long other connections wait while deliveries run).
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
f.readline()                                  # 220
rtts, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    t0 = time.monotonic()
    s.sendall(b"NOOP\r\n")
    if not f.readline().startswith(b"250"):
        break
    rtts.append((time.monotonic() - t0) * 1000)
    time.sleep(0.01)
s.sendall(b"QUIT\r\n")
rtts.sort()
n = len(rtts)
print("%.2f %.2f %.2f %d" % (rtts[n // 2], rtts[min(n - 1, n * 99 // 100)], rtts[-1], n) if n else "- - - 0")
