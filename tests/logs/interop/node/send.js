'use strict';
// Sends events to a forward port with the npm package fluent-logger, as an app would.
//
//   node send.js '{"port": 24224, "tag": "slipway.shop", "label": "web.1", "mode": "Message",
//                  "time": "event", "start": 1795000000, "count": 20,
//                  "sharedKey": "k", "clientHostname": "node-app"}'
//
// One JSON object per line on stdout: {"event": "error", ...} for every error the client
// reports, then {"event": "done", "acked": N, "errors": [...]} once every event has been
// acked or failed (or the handshake failed), or {"event": "timeout", ...} after 15 s.
// Exit status 0 only when all N events were acked.
const logger = require('fluent-logger');

const cfg = JSON.parse(process.argv[2]);
const security = cfg.sharedKey === undefined
  ? undefined
  : { clientHostname: cfg.clientHostname, sharedKey: cfg.sharedKey };
const sender = logger.createFluentSender(cfg.tag, {
  host: '127.0.0.1',
  port: cfg.port,
  eventMode: cfg.mode,
  requireAckResponse: true,
  ackResponseTimeout: 10000,
  enableReconnect: false,
  security,
  // the client logs its handshake steps with console.info: keep stdout for the JSON lines
  internalLogger: { info() {}, error(...args) { console.error(...args); } },
});

let acked = 0;
let settled = 0;
const errors = [];
let finished = false;

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function finish(status) {
  if (finished) return;
  finished = true;
  say({ event: 'done', acked, settled, errors });
  sender.end(null, null, () => process.exit(status));
  setTimeout(() => process.exit(status), 1000).unref();
}

function describe(err) {
  return { name: err.name, message: err.message, ack: err.options && err.options.ack };
}

sender.on('error', (err) => {
  say({ event: 'error', ...describe(err) });
  // A refused handshake fails no callback: the events stay queued, nothing more will come.
  if (err.name === 'HandshakeError') {
    errors.push(describe(err));
    finish(1);
  }
});

setTimeout(() => {
  say({ event: 'timeout', acked, settled });
  process.exit(2);
}, 15000);

for (let i = 0; i < cfg.count; i++) {
  const time = cfg.time === 'event'
    ? new logger.EventTime(cfg.start + i, 123456789 + i)
    : cfg.start + i;
  sender.emit(cfg.label, { message: `node ${cfg.mode} ${cfg.time} ${i}`, i }, time, (err) => {
    settled += 1;
    if (err) {
      errors.push(describe(err));
    } else {
      acked += 1;
    }
    if (settled === cfg.count) finish(errors.length === 0 ? 0 : 1);
  });
}
