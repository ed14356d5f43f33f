// kafkajs 2.2.4 with SASL (SaslHandshake v1 + SaslAuthenticate): `node kafkajs_sasl.mjs host:port mechanism
// user password` produces and reads back one message; prints {"ok": true, "values": [...]} or
// {"ok": false, "type": ..., "message": ...} for an authentication failure.
import kafkajs from "kafkajs";

const { Kafka, logLevel } = kafkajs;
const [broker, mechanism, username, password] = process.argv.slice(2);
const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timed out" }));
  process.exit(2);
}, 20000);
const kafka = new Kafka({ clientId: "omnibus-kafkajs-sasl", brokers: [broker], logLevel: logLevel.NOTHING,
                          sasl: { mechanism, username, password }, retry: { retries: 0 } });
const topic = `kjs-sasl-${mechanism.toLowerCase()}`;
try {
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  await producer.send({ topic, messages: [{ key: "k", value: "hello" }] });
  await producer.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  console.log(JSON.stringify({ ok: true, high: offsets[0].high }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, type: e.type || e.name, message: e.message }));
}
clearTimeout(timer);
