local fake = require "fake"

local TEXT = { msg_type = "text", content = { text = "over TLS" } }

describe("TLS", function()
  before_each(function() fake.reset() end)

  it("verifies the server's certificate by default", function()
    local client = fake.client({ base_url = fake.tls_url })
    local data, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.is_nil(data)
    assert.are.equal("transport", err.kind)
    assert.are.equal(60, err.curl_code) -- CURLE_PEER_FAILED_VERIFICATION
    assert.is_false(err.sent)
    assert.are.equal(0, #fake.requests()) -- not even the token request got through
  end)

  it("trusts a certificate given with ca_file", function()
    local client = fake.client({ base_url = fake.tls_url, ca_file = fake.ca_file })
    local data = assert(client:send_ticket_message(fake.TICKET, TEXT))
    assert.is_string(data.message_id)
    assert.are.equal(1, fake.state().ticket_messages[fake.TICKET])
  end)

  it("does not trust a ca_path that lacks the certificate", function()
    local client = fake.client({ base_url = fake.tls_url, ca_path = "/nonexistent-ca-dir",
                                 ca_file = "/nonexistent-ca-file.pem" })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("transport", err.kind)
    assert.are.equal(0, #fake.requests())
  end)

  it("skips the check only when told insecure = true", function()
    local client = fake.client({ base_url = fake.tls_url, insecure = true })
    assert(client:send_ticket_message(fake.TICKET, TEXT))
  end)
end)
