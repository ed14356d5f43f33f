// JetStream policies with nats.js (tests/clients/test_jetstream_policies.py): limits with discard new,
// max_msg_size, purge with filter/keep, deleteMessage, names with a subject filter, ack policy all, NAK
// with a delay and TERM on a pull consumer, interest retention without consumers, workqueue filters
// that overlap, and a bad consumer config -- each error as nats-server's api_error.
import { AckPolicy, DiscardPolicy, RetentionPolicy } from "nats";
import { run } from "./_common.mjs";

const apiErr = async (fn) => {
  try {
    await fn();
    return null;
  } catch (e) {
    return e.api_error ? [e.api_error.code, e.api_error.err_code, e.api_error.description] : String(e);
  }
};

await run(async (open) => {
  const nc = await open();
  const jsm = await nc.jetstreamManager();
  const js = nc.jetstream();
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const out = {};

  // limits: discard new, max_msg_size
  await jsm.streams.add({
    name: "JPLIM", subjects: ["jplim"], max_msgs: 2, discard: DiscardPolicy.New, max_msg_size: 4,
  });
  await js.publish("jplim", enc.encode("a"));
  await js.publish("jplim", enc.encode("b"));
  out.full = await apiErr(() => js.publish("jplim", enc.encode("c")));
  out.too_big = await apiErr(() => js.publish("jplim", enc.encode("12345")));

  // purge with filter/keep, deleteMessage, names with a subject filter
  await jsm.streams.add({ name: "JPPUR", subjects: ["jppur.*"] });
  for (let i = 0; i < 6; i++) await js.publish("jppur." + (i % 2 ? "b" : "a"), enc.encode(String(i)));
  out.purged = (await jsm.streams.purge("JPPUR", { filter: "jppur.a", keep: 1 })).purged;
  out.deleted = await jsm.streams.deleteMessage("JPPUR", 4); // left: 2, 5, 6
  out.delete_again = await apiErr(() => jsm.streams.deleteMessage("JPPUR", 4));
  const st = (await jsm.streams.info("JPPUR")).state;
  out.state = [st.messages, st.first_seq, st.last_seq, st.num_deleted];
  out.names = [];
  for await (const n of jsm.streams.names("jppur.b")) out.names.push(n);

  // ack policy all; NAK with a delay and TERM on a pull consumer
  await jsm.consumers.add("JPPUR", { durable_name: "all", ack_policy: AckPolicy.All });
  const all = await js.consumers.get("JPPUR", "all");
  const got = [];
  for await (const m of await all.fetch({ max_messages: 3, expires: 1000 })) got.push(m);
  await got[1].ackAck(); // acked once the server says so (an info right after a plain ack may race it)
  const ai = await jsm.consumers.info("JPPUR", "all");
  out.ack_all = [ai.num_ack_pending, ai.ack_floor.stream_seq, ai.num_pending];
  await jsm.consumers.add("JPPUR", { durable_name: "nak", ack_policy: AckPolicy.Explicit, ack_wait: 5e9 });
  const nak = await js.consumers.get("JPPUR", "nak");
  const first = [];
  for await (const m of await nak.fetch({ max_messages: 3, expires: 1000 })) first.push(m);
  const t0 = Date.now();
  first[0].nak(300);
  first[1].term();
  first[2].ack();
  const again = [];
  for await (const m of await nak.fetch({ max_messages: 1, expires: 1500 })) {
    again.push([dec.decode(m.data), m.info.redeliveryCount, Date.now() - t0 >= 250]);
    await m.ackAck();
  }
  out.nak_delay = again;
  const ni = await jsm.consumers.info("JPPUR", "nak");
  out.nak_info = [ni.num_ack_pending, ni.num_redelivered, ni.delivered.stream_seq];

  // interest retention with no consumer: not kept; workqueue filters must not overlap
  await jsm.streams.add({ name: "JPINT", subjects: ["jpint"], retention: RetentionPolicy.Interest });
  const pa = await js.publish("jpint", enc.encode("x"));
  const ist = (await jsm.streams.info("JPINT")).state;
  out.interest = [pa.seq, ist.messages, ist.last_seq];
  await jsm.streams.add({ name: "JPWQ", subjects: ["jpwq.*"], retention: RetentionPolicy.Workqueue });
  await jsm.consumers.add("JPWQ", { durable_name: "a", ack_policy: AckPolicy.Explicit, filter_subject: "jpwq.a" });
  out.wq_overlap = await apiErr(() =>
    jsm.consumers.add("JPWQ", { durable_name: "star", ack_policy: AckPolicy.Explicit, filter_subject: "jpwq.*" }));
  out.bad_policy = await apiErr(() =>
    jsm.consumers.add("JPPUR", { durable_name: "bad", ack_policy: AckPolicy.Explicit, opt_start_seq: 3 }));
  out.missing = await apiErr(() => jsm.consumers.info("JPPUR", "nobody"));
  return out;
});
