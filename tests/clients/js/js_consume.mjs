// nats.js consumers: pull (consumer.fetch, consumer.consume with acks), a push durable consumer with
// manual acks, and ordered consumers (js.consumers.get without a name; js.subscribe ordered push).
import { AckPolicy, consumerOpts, createInbox } from "nats";
import { run } from "./_common.mjs";

await run(async (open) => {
  const nc = await open();
  const jsm = await nc.jetstreamManager();
  const js = nc.jetstream();
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  await jsm.streams.add({ name: "JSWORK", subjects: ["jswork.*"] });
  for (let i = 0; i < 10; i++) await js.publish("jswork." + (i % 2 ? "odd" : "even"), enc.encode(String(i)));

  // pull: fetch then consume
  await jsm.consumers.add("JSWORK", { durable_name: "puller", ack_policy: AckPolicy.Explicit });
  const c = await js.consumers.get("JSWORK", "puller");
  const fetched = [];
  const iter = await c.fetch({ max_messages: 4, expires: 2000 });
  for await (const m of iter) {
    fetched.push(dec.decode(m.data));
    m.ack();
  }
  const consumed = [];
  const messages = await c.consume({ max_messages: 3 });
  for await (const m of messages) {
    consumed.push([dec.decode(m.data), m.info.redeliveryCount, m.info.pending]);
    m.ack();
    if (consumed.length === 6) break;
  }
  const pullInfo = await c.info();

  // push durable, manual acks, one NAK'd and redelivered
  const opts = consumerOpts();
  opts.durable("pusher");
  opts.manualAck();
  opts.ackExplicit();
  opts.deliverTo(createInbox());
  opts.filterSubject("jswork.odd");
  const sub = await js.subscribe("jswork.odd", opts);
  const pushed = [];
  let nakked = false;
  for await (const m of sub) {
    pushed.push([dec.decode(m.data), m.info.redeliveryCount]);
    if (!nakked && dec.decode(m.data) === "3") {
      nakked = true;
      m.nak();
    } else {
      m.ack();
    }
    if (pushed.length === 6) break;
  }
  const pushInfo = await jsm.consumers.info("JSWORK", "pusher");

  // ordered: pull-based (new API) and push-based (js.subscribe)
  const oc = await js.consumers.get("JSWORK");
  const ordered = [];
  const oiter = await oc.fetch({ max_messages: 10, expires: 2000 });
  for await (const m of oiter) ordered.push(dec.decode(m.data));
  const oopts = consumerOpts();
  oopts.orderedConsumer();
  const osub = await js.subscribe("jswork.*", oopts);
  const orderedPush = [];
  for await (const m of osub) {
    orderedPush.push([dec.decode(m.data), m.info.streamSequence]);
    if (orderedPush.length === 10) break;
  }
  return {
    fetched,
    consumed,
    pull_info: [pullInfo.num_ack_pending, pullInfo.num_pending, pullInfo.delivered.stream_seq],
    pushed,
    push_info: [pushInfo.num_ack_pending, pushInfo.ack_floor.stream_seq],
    ordered,
    ordered_push: orderedPush,
  };
});
