-- bench/imap/make_maildir.lua ROOT USER COUNT: fills ROOT/USER (a Maildir)
-- with COUNT messages of realistic shape (about 20 header lines, 1-4 KiB
-- bodies), through the parley store (no fsync: it is scratch data).
local root, user, count = arg[1], arg[2], tonumber(arg[3])
local store = assert(require("parley.mail.maildir").open(root, { fsync = false }))
local body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"):rep(40)
for i = 1, count do
  local msg = table.concat {
    "Return-Path: <sender", i % 97, "@example.net>\r\n",
    "Received: from mx", i % 7, ".example.net (mx.example.net [192.0.2.", i % 250, "])\r\n",
    "\tby mail.example.org (parley) with ESMTP id ", i, ";\r\n",
    "\tTue, 24 Nov 2026 10:", string.format("%02d", i % 60), ":00 +0000\r\n",
    "From: Sender Number ", i % 97, " <sender", i % 97, "@example.net>\r\n",
    "To: Alice <alice@example.org>\r\n",
    "Cc: team@example.org\r\n",
    "Subject: Benchmark message number ", i, " about topic ", i % 13, "\r\n",
    "Date: Tue, 24 Nov 2026 10:", string.format("%02d", i % 60), ":00 +0000\r\n",
    "Message-ID: <", i, ".bench@example.net>\r\n",
    "MIME-Version: 1.0\r\n",
    "Content-Type: text/plain; charset=utf-8\r\n",
    "Content-Transfer-Encoding: 8bit\r\n",
    "X-Mailer: parley-bench\r\n",
    "\r\n",
    body:sub(1, 1000 + (i * 37) % 3000),
  }
  assert(store:deliver(user, msg, nil, (i % 3 == 0) and "S" or nil))
end
