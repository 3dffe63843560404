// The official Node SDK's sequential ticket-message sends, for `make bench`:
// node send.js BASE_URL APP_ID APP_SECRET HELPDESK_ID HELPDESK_TOKEN TICKET N
// prints the requests per second. Each call passes withHelpDeskCredential()
// (the SDK sends the helpdesk header only then).
const lark = require('@larksuiteoapi/node-sdk');

async function main() {
  const [url, appId, appSecret, helpDeskId, helpDeskToken, ticket, n] = process.argv.slice(2);
  const client = new lark.Client({
    appId, appSecret, helpDeskId, helpDeskToken, domain: url, loggerLevel: lark.LoggerLevel.error,
  });
  const send = async () => {
    const res = await client.helpdesk.ticketMessage.create({
      path: { ticket_id: ticket },
      data: { msg_type: 'text', content: JSON.stringify({ text: 'bench' }) },
    }, lark.withHelpDeskCredential());
    if (!res || res.code !== 0) throw new Error('send failed: ' + JSON.stringify(res));
  };
  await send(); // the token, the connection
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < Number(n); i++) await send();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log((Number(n) / seconds).toFixed(1));
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
