// amqplib: confirms, consume with prefetch and ack, properties, get, topic routing, server-named queues,
// mandatory returns, and a channel error that leaves the connection usable.
import { run, until } from "./_amqp.mjs";

await run(async (open) => {
  const conn = await open();
  const out = {};

  // publish with confirms, persistent, with properties
  const pub = await conn.createConfirmChannel();
  const q = await pub.assertQueue("js-work", { durable: true });
  out.declared = { queue: q.queue, messageCount: q.messageCount, consumerCount: q.consumerCount };
  for (let i = 0; i < 20; i++) {
    pub.sendToQueue("js-work", Buffer.from(`job ${i}`), {
      persistent: true, contentType: "text/plain", messageId: `m${i}`, headers: { n: i, tag: "js" },
    });
  }
  await pub.waitForConfirms();
  out.afterPublish = (await pub.checkQueue("js-work")).messageCount;

  // consume with prefetch 5 and manual acks
  const sub = await conn.createChannel();
  await sub.prefetch(5);
  const got = [];
  let first = null;
  const { consumerTag } = await sub.consume("js-work", (msg) => {
    if (first === null) {
      const p = msg.properties;
      first = { contentType: p.contentType, messageId: p.messageId, headers: p.headers, deliveryMode: p.deliveryMode,
                redelivered: msg.fields.redelivered, routingKey: msg.fields.routingKey, exchange: msg.fields.exchange };
    }
    got.push(msg.content.toString());
    sub.ack(msg);
  });
  await until(() => got.length === 20);
  await sub.cancel(consumerTag);
  out.consumed = got;
  out.first = first;
  out.consumerTagPrefix = consumerTag.slice(0, 9);

  // basic.get
  await pub.assertQueue("js-get", { autoDelete: false });
  pub.sendToQueue("js-get", Buffer.from("one"));
  pub.sendToQueue("js-get", Buffer.from("two"));
  await pub.waitForConfirms();
  const g1 = await sub.get("js-get", { noAck: false });
  sub.ack(g1);
  const g2 = await sub.get("js-get", { noAck: true });
  const g3 = await sub.get("js-get");
  out.get = [g1.content.toString(), g1.fields.messageCount, g2.content.toString(), g3];

  // topic exchange + server-named exclusive queue
  await pub.assertExchange("js-topic", "topic", { autoDelete: true });
  const { queue: named } = await pub.assertQueue("", { exclusive: true });
  out.namedPrefix = named.slice(0, 8);
  await pub.bindQueue(named, "js-topic", "logs.*.error");
  for (const key of ["logs.web.error", "logs.web.info", "logs.db.error", "other"]) {
    pub.publish("js-topic", key, Buffer.from(key));
  }
  await pub.waitForConfirms();
  const routed = [];
  for (;;) {
    const m = await sub.get(named, { noAck: true });
    if (!m) break;
    routed.push(m.content.toString());
  }
  out.routed = routed;

  // mandatory publish that no queue takes: basic.return
  const returned = [];
  const plain = await conn.createChannel();
  plain.on("return", (m) => returned.push([m.fields.replyCode, m.fields.replyText, m.fields.routingKey, m.content.toString()]));
  plain.publish("amq.direct", "nobody", Buffer.from("bounce"), { mandatory: true });
  await until(() => returned.length === 1);
  out.returned = returned[0];

  // a channel error closes only that channel
  const bad = await conn.createChannel();
  let channelError = null;
  bad.on("error", (e) => { channelError = e.message; });
  try {
    await bad.checkQueue("js-missing");
    out.checkMissing = "no error";
  } catch (e) {
    out.checkMissing = { code: e.code, message: e.message };
  }
  await until(() => channelError !== null);
  out.channelError = channelError;
  const again = await conn.createChannel();
  out.stillWorks = (await again.assertQueue("js-after", { autoDelete: true })).queue;
  return out;
});
