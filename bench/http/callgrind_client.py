# callgrind_client.py PORT N [PATH]: N sequential keep-alive GETs of PATH
# (500 per connection), each reply read to its Content-Length.
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
path = sys.argv[3] if len(sys.argv) > 3 else "/hello"
req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path, port)).encode()
for i in range(n):
    if i % 500 == 0:
        if i: s.close()
        s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    data = b""
    while True:
        data += s.recv(65536)
        h = data.find(b"\r\n\r\n")
        if h >= 0:
            cl = int(data[:h].lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(data) >= h + 4 + cl: break
s.close()
