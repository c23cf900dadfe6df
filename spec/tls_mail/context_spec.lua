-- parley.smtp.starttls.context_for: the context a client's STARTTLS/STLS
-- uses (SMTP, POP3 and IMAP clients share it).
local starttls = require "parley.smtp.starttls"
local tls = require "parley.tls"

describe("the STARTTLS context of a client", function()
  it("is the one connect made unless the call asks for another", function()
    local current = tls.client()
    assert.equal(current, starttls.context_for(current, {}))
    local insecure = assert(starttls.context_for(current, { insecure = true }))
    assert.equal(tls.client(true), insecure)
    local own = assert(tls.context{ mode = "client" })
    assert.equal(own, starttls.context_for(current, { tls_ctx = own }))
    assert.equal(tls.client(), starttls.context_for(nil, {}))
  end)

  it("says which file is wrong when the call names a CA that cannot be read", function()
    local ctx, err = starttls.context_for(tls.client(), { ca = "/nonexistent/ca.pem" })
    assert.is_nil(ctx)
    assert.matches("/nonexistent/ca.pem", err, 1, true)
  end)
end)
