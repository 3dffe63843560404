// The official Node SDK's side of spec/node_sdk_spec.lua (@larksuiteoapi/node-sdk,
// installed into bench/node by `make node-sdk`). One batch per run: a JSON object
// on stdin, the results as a JSON object on stdout. Bytes travel as hex.
//   encrypt:  [{ key, plain }]  -> the "encrypt" value of plain: the SDK has no
//             encrypt, so this is Node's crypto under the key the SDK's AESCipher
//             derives, checked by decrypting it back with that AESCipher
//   decrypt:  [{ key, encrypt }] -> { ok, plain } | { ok: false, error }: AESCipher.decrypt
//   dispatch: [{ encrypt_key, verification_token, headers, body, card }] -> what
//             the SDK's adaptDefault (autoChallenge on) answers over an
//             EventDispatcher with a handler for every type seen (card: over a
//             CardActionHandler): { accepted, challenge } for a URL verification,
//             { accepted, event_type, event_id, uuid, open_message_id } for an
//             event its handler got, { accepted: false, answer | error } else
const path = require('path');
const crypto = require('crypto');
const { EventEmitter } = require('events');

const lark = require(path.join(__dirname, '..', '..', 'bench', 'node', 'node_modules', '@larksuiteoapi', 'node-sdk'));

const quiet = { error() {}, warn() {}, info() {}, debug() {}, trace() {} };
const TYPES = ['helpdesk.ticket_message.created_v1', 'helpdesk.ticket.created_v1', 'helpdesk.ticket.updated_v1'];

function encrypt(c) {
  const cipher = new lark.AESCipher(c.key);
  const iv = crypto.randomBytes(16);
  const enc = crypto.createCipheriv('aes-256-cbc', cipher.key, iv);
  const plain = Buffer.from(c.plain, 'hex');
  const value = Buffer.concat([iv, enc.update(plain), enc.final()]).toString('base64');
  if (Buffer.from(cipher.decrypt(value), 'utf8').toString('hex') !== c.plain) throw new Error('SDK round trip failed');
  return value;
}

function decrypt(c) {
  try {
    return { ok: true, plain: Buffer.from(new lark.AESCipher(c.key).decrypt(c.encrypt), 'utf8').toString('hex') };
  } catch (e) {
    return { ok: false, error: String(e.message || e) };
  }
}

// One request through adaptDefault, as node's http server would hand it
// over: header names in lower case, the body in chunks.
function dispatch(c) {
  const params = {
    encryptKey: c.encrypt_key, verificationToken: c.verification_token, logger: quiet,
    loggerLevel: lark.LoggerLevel.fatal,
  };
  const dispatcher = c.card
    ? new lark.CardActionHandler(params, (data) => ({
      handled: true, event_type: data.event_type,
      open_message_id: data.open_message_id || (data.context && data.context.open_message_id),
    }))
    : new lark.EventDispatcher(params);
  const handlers = {};
  // the type the dispatcher routed by (v1: event.type; its data.type is "event_callback")
  for (const t of TYPES) {
    handlers[t] = (data) => ({ handled: true, event_type: t, event_id: data.event_id, uuid: data.uuid });
  }
  if (!c.card) dispatcher.register(handlers);
  const serve = lark.adaptDefault('/events', dispatcher, { autoChallenge: true });
  const headers = {};
  for (const [k, v] of Object.entries(c.headers || {})) headers[k.toLowerCase()] = v;
  const req = Object.assign(new EventEmitter(), { url: '/events', headers });
  return new Promise((resolve) => {
    const res = { end: (text) => resolve(text) };
    serve(req, res).catch((e) => resolve({ thrown: String(e.message || e) }));
    const body = Buffer.from(c.body, 'hex');
    req.emit('data', body);
    req.emit('end');
  }).then((text) => {
    if (text && text.thrown) return { accepted: false, error: text.thrown };
    const v = text === undefined ? undefined : JSON.parse(text);
    if (v && typeof v.challenge === 'string') return { accepted: true, challenge: v.challenge };
    if (v && v.handled) {
      return { accepted: true, event_type: v.event_type, event_id: v.event_id, uuid: v.uuid,
        open_message_id: v.open_message_id };
    }
    return { accepted: false, answer: v === undefined ? 'nothing' : v };
  });
}

async function main() {
  const batch = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const out = {
    sdk_version: require(path.join(__dirname, '..', '..', 'bench', 'node', 'node_modules', '@larksuiteoapi',
      'node-sdk', 'package.json')).version,
    encrypt: (batch.encrypt || []).map(encrypt),
    decrypt: (batch.decrypt || []).map(decrypt),
    dispatch: [],
  };
  for (const c of batch.dispatch || []) out.dispatch.push(await dispatch(c));
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { console.error(e.stack || e); process.exit(1); });
