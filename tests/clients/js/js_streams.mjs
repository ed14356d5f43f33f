// JetStream management and publishing with nats.js: jsm.streams add/info/update/list/delete, js.publish
// PubAcks with msgID de-duplication and expectations, errors with nats-server's codes.
import { AckPolicy } from "nats";
import { run } from "./_common.mjs";

await run(async (open) => {
  const nc = await open();
  const jsm = await nc.jetstreamManager();
  const js = nc.jetstream();
  const enc = new TextEncoder();
  const added = await jsm.streams.add({ name: "JSORDERS", subjects: ["jsorders.>"] });
  const acks = [];
  for (let i = 0; i < 4; i++) {
    acks.push(await js.publish("jsorders.new", enc.encode("o" + i), { msgID: "id" + i }));
  }
  const dup = await js.publish("jsorders.new", enc.encode("again"), { msgID: "id2" });
  let wrongLast = null;
  try {
    await js.publish("jsorders.new", enc.encode("x"), { expect: { lastSequence: 1 } });
  } catch (e) {
    wrongLast = { code: e.code, api: e.api_error };
  }
  const okLast = await js.publish("jsorders.new", enc.encode("y"), { expect: { lastSequence: 4 } });
  const updated = await jsm.streams.update("JSORDERS", { ...added.config, subjects: ["jsorders.>", "jsmore.*"], max_msgs: 100 });
  const viaNew = await js.publish("jsmore.a", enc.encode("z"));
  const info = await jsm.streams.info("JSORDERS");
  const names = [];
  for await (const n of jsm.streams.names()) names.push(n);
  let missing = null;
  try {
    await jsm.streams.info("NOPE");
  } catch (e) {
    missing = { code: e.code, api: e.api_error };
  }
  await jsm.consumers.add("JSORDERS", { durable_name: "c1", ack_policy: AckPolicy.Explicit });
  const consumers = [];
  for await (const ci of jsm.consumers.list("JSORDERS")) consumers.push(ci.name);
  const sm = await jsm.streams.getMessage("JSORDERS", { seq: 2 });
  const deleted = await jsm.streams.delete("JSORDERS");
  return {
    created: added.config.name,
    acks: acks.map((a) => [a.stream, a.seq, a.duplicate]),
    dup: [dup.seq, dup.duplicate],
    wrong_last: wrongLast,
    ok_last: okLast.seq,
    updated_subjects: updated.config.subjects,
    max_msgs: updated.config.max_msgs,
    via_new: viaNew.seq,
    state: [info.state.messages, info.state.first_seq, info.state.last_seq],
    names,
    missing,
    consumers,
    get: [sm.subject, sm.seq, new TextDecoder().decode(sm.data)],
    deleted,
  };
});
