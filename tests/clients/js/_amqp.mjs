// Shared by the amqp_*.mjs scripts: each is `node <script>.mjs <amqp-url>`, prints one JSON line and exits
// 0, or prints {"error": ...} and exits 1. A hard deadline keeps a broken broker from hanging the test.
import amqp from "amqplib";

export const DEADLINE_MS = 20000;

export async function run(main) {
  const url = process.argv[2];
  if (!url) {
    console.log(JSON.stringify({ error: "usage: node script.mjs amqp://user:pass@host:port/" }));
    process.exit(1);
  }
  const timer = setTimeout(() => {
    console.log(JSON.stringify({ error: `timed out after ${DEADLINE_MS} ms` }));
    process.exit(2);
  }, DEADLINE_MS);
  const conns = [];
  const open = async () => {
    const conn = await amqp.connect(url);
    conns.push(conn);
    return conn;
  };
  try {
    const result = await main(open);
    for (const conn of conns) await conn.close();
    console.log(JSON.stringify(result));
    clearTimeout(timer);
  } catch (e) {
    console.log(JSON.stringify({ error: String(e && e.stack ? e.stack : e), code: e && e.code }));
    process.exit(1);
  }
}

// Resolve once `pred()` is true, polling every 5 ms.
export async function until(pred) {
  while (!pred()) await new Promise((r) => setTimeout(r, 5));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
