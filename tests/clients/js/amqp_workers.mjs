// amqplib: two competing consumers with prefetch 1 share a work queue; a nack with requeue comes back
// redelivered; a consumer that goes away has its unacked message redelivered to the other.
import { run, until, sleep } from "./_amqp.mjs";

await run(async (open) => {
  const conn = await open();
  const out = {};
  const pub = await conn.createConfirmChannel();
  await pub.assertQueue("js-jobs", { durable: false, autoDelete: false });
  await pub.purgeQueue("js-jobs");

  const counts = [0, 0];
  const seen = [];
  const workers = [];
  for (let w = 0; w < 2; w++) {
    const ch = await conn.createChannel();
    await ch.prefetch(1);
    await ch.consume("js-jobs", async (msg) => {
      await sleep(5);
      ch.ack(msg);
      counts[w] += 1;
      seen.push(msg.content.toString());
    });
    workers.push(ch);
  }
  for (let i = 0; i < 40; i++) pub.sendToQueue("js-jobs", Buffer.from(`j${i}`));
  await pub.waitForConfirms();
  await until(() => seen.length === 40);
  out.counts = counts;
  out.unique = new Set(seen).size;
  for (const ch of workers) await ch.close();

  // nack with requeue: the message comes back, redelivered
  const ch = await conn.createChannel();
  await ch.prefetch(1);
  const deliveries = [];
  let nacked = false;
  await ch.consume("js-jobs", (msg) => {
    deliveries.push([msg.content.toString(), msg.fields.redelivered]);
    if (!nacked) {
      nacked = true;
      ch.nack(msg, false, true);
    } else {
      ch.ack(msg);
    }
  });
  pub.sendToQueue("js-jobs", Buffer.from("again"));
  await pub.waitForConfirms();
  await until(() => deliveries.length === 2);
  out.nackRequeue = deliveries;
  await ch.close();

  // a consumer's channel closes with a message unacked: it goes to the other consumer, redelivered
  const holder = await conn.createChannel();
  await holder.prefetch(1);
  let held = null;
  await holder.consume("js-jobs", (msg) => { held = msg.content.toString(); });
  pub.sendToQueue("js-jobs", Buffer.from("orphan"));
  await pub.waitForConfirms();
  await until(() => held !== null);
  const taker = await conn.createChannel();
  const taken = [];
  await taker.consume("js-jobs", (msg) => { taken.push([msg.content.toString(), msg.fields.redelivered]); taker.ack(msg); });
  await sleep(100);
  out.beforeClose = taken.length;
  await holder.close();
  await until(() => taken.length === 1);
  out.orphan = taken[0];
  return out;
});
