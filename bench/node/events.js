// The official Node SDK's EventDispatcher decoding one pushed event over and
// over, for `make bench`: node events.js REQUEST_FILE N
// REQUEST_FILE: JSON { encrypt_key, verification_token, headers, body, event_type }.
// Each round is what the SDK's adaptDefault does with a request body it has
// read: JSON.parse, then dispatcher.invoke (signature check, decryption,
// JSON.parse of the plaintext, the handler). Prints the events per second.
const fs = require('fs');
const lark = require('@larksuiteoapi/node-sdk');

async function main() {
  const [file, n] = process.argv.slice(2);
  const req = JSON.parse(fs.readFileSync(file, 'utf8'));
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) headers[k.toLowerCase()] = v;
  const quiet = { error() {}, warn() {}, info() {}, debug() {}, trace() {} };
  const dispatcher = new lark.EventDispatcher({
    encryptKey: req.encrypt_key, verificationToken: req.verification_token, logger: quiet,
    loggerLevel: lark.LoggerLevel.fatal,
  });
  let handled = 0;
  dispatcher.register({ [req.event_type]: async () => { handled += 1; return 'ok'; } });
  const once = async () => {
    const data = Object.assign(Object.create({ headers }), JSON.parse(req.body));
    if ((await dispatcher.invoke(data)) !== 'ok') throw new Error('the dispatcher refused the event');
  };
  for (let i = 0; i < 2000; i++) await once(); // warm-up: the JIT
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < Number(n); i++) await once();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (handled !== 2000 + Number(n)) throw new Error('handled ' + handled);
  console.log((Number(n) / seconds).toFixed(1));
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
