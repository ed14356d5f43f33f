// Shared by the kafkajs scripts: `node <script>.mjs <host:port>` prints one JSON line and exits 0, or prints
// {"error": ...} and exits 1. A hard deadline keeps a broken broker from hanging the test.
import { Kafka, logLevel } from "kafkajs";

export const DEADLINE_MS = 20000;

export async function runKafka(main) {
  const broker = process.argv[2];
  if (!broker) {
    console.log(JSON.stringify({ error: "usage: node script.mjs host:port" }));
    process.exit(1);
  }
  const timer = setTimeout(() => {
    console.log(JSON.stringify({ error: `timed out after ${DEADLINE_MS} ms` }));
    process.exit(2);
  }, DEADLINE_MS);
  const kafka = new Kafka({ clientId: "omnibus-kafkajs", brokers: [broker], logLevel: logLevel.NOTHING,
                            retry: { retries: 5, initialRetryTime: 50 } });
  try {
    const result = await main(kafka);
    console.log(JSON.stringify(result));
    clearTimeout(timer);
  } catch (e) {
    console.log(JSON.stringify({ error: String(e && e.stack ? e.stack : e), type: e && e.type }));
    process.exit(1);
  }
}
