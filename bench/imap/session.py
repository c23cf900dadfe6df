# bench/imap/session.py PORT ROUNDS [MODE]: times ROUNDS IMAP sessions with
# python3 imaplib, one line per session with the seconds it took.
# MODE "fetch" (default): LOGIN, SELECT INBOX,
#   FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[HEADER]), LOGOUT.
# MODE "select": LOGIN, then the time of SELECT INBOX alone, LOGOUT.
import imaplib, sys, time
port, rounds = int(sys.argv[1]), int(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else "fetch"
for _ in range(rounds):
    t0 = time.perf_counter()
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("alice", "pw")
    if mode == "select":
        t0 = time.perf_counter()
        typ, data = m.select("INBOX")
        t1 = time.perf_counter()
        n = int(data[0])
    else:
        typ, data = m.select("INBOX")
        typ, data = m.fetch("1:*", "(FLAGS RFC822.SIZE BODY.PEEK[HEADER])")
        n = sum(1 for d in data if isinstance(d, tuple))
    m.logout()
    if mode != "select":
        t1 = time.perf_counter()
    assert typ == "OK"
    print("%.4f %d" % (t1 - t0, n), flush=True)
