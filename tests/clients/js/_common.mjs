// Shared by the scripts here: each is `node <script>.mjs <nats-url>`, prints one JSON line and exits 0,
// or prints {"error": ...} and exits 1. A hard deadline keeps a broken broker from hanging the test.
import { connect } from "nats";

export const DEADLINE_MS = 15000;

export async function run(main) {
  const url = process.argv[2];
  if (!url) {
    console.log(JSON.stringify({ error: "usage: node script.mjs nats://host:port" }));
    process.exit(1);
  }
  const timer = setTimeout(() => {
    console.log(JSON.stringify({ error: `timed out after ${DEADLINE_MS} ms` }));
    process.exit(2);
  }, DEADLINE_MS);
  const conns = [];
  const open = async (opts = {}) => {
    const nc = await connect({ servers: url, timeout: 3000, maxReconnectAttempts: 0, ...opts });
    conns.push(nc);
    return nc;
  };
  try {
    const result = await main(open);
    for (const nc of conns) await nc.close();
    console.log(JSON.stringify(result));
    clearTimeout(timer);
  } catch (e) {
    console.log(JSON.stringify({ error: String(e && e.stack ? e.stack : e), code: e && e.code }));
    process.exit(1);
  }
}

// Collect `n` messages of a subscription (an async iterator), as {subject, data, headers}.
export async function take(sub, n, decode = (m) => new TextDecoder().decode(m.data)) {
  const out = [];
  if (n === 0) return out;
  for await (const m of sub) {
    const headers = m.headers ? Object.fromEntries([...m.headers].map(([k, v]) => [k, v])) : null;
    out.push({ subject: m.subject, data: decode(m), reply: m.reply || "", headers });
    if (out.length >= n) break;
  }
  return out;
}
