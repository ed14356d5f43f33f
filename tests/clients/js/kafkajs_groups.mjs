// kafkajs 2.2.4 against a Kafka bootstrap address: `node kafkajs_groups.mjs 127.0.0.1:PORT`.
// A producer and a consumer group: one member takes both partitions, a second member joins (rebalance: one
// partition each), eachMessage sees every record, the group's commits reach the end offsets, the admin
// describes the group, and after both leave a new member resumes from the committed offsets.
// Prints one JSON line (or {"error": ...} and exits 1); a hard deadline keeps a broken broker from hanging.
import kafkajs from "kafkajs";

const { Kafka, logLevel } = kafkajs;
const DEADLINE_MS = 30000;
const TOPIC = "kjs-orders";
const GROUP = "kjs-group";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function main(broker) {
  const kafka = new Kafka({ clientId: "omnibus-kafkajs", brokers: [broker], logLevel: logLevel.NOTHING,
                            retry: { retries: 5, initialRetryTime: 100 } });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 2 }], waitForLeaders: true });
  const producer = kafka.producer();
  await producer.connect();
  const send = (from, to) => producer.send({ topic: TOPIC, acks: -1, messages: Array.from(
    { length: to - from }, (_, i) => ({ key: `k${from + i}`, value: `v${from + i}`, partition: (from + i) % 2 })) });

  const seen = new Map(); // "partition:offset" -> [member names]
  const assignments = {};
  const consumerOpts = { groupId: GROUP, sessionTimeout: 6000, rebalanceTimeout: 10000, heartbeatInterval: 100,
                         maxWaitTimeInMs: 100 };
  const member = async (name) => {
    const c = kafka.consumer(consumerOpts);
    c.on(c.events.GROUP_JOIN, (e) => { assignments[name] = (e.payload.memberAssignment[TOPIC] || []).slice().sort(); });
    await c.connect();
    await c.subscribe({ topic: TOPIC, fromBeginning: true });
    await c.run({ eachMessage: async ({ partition, message }) => {
      const key = `${partition}:${message.offset}`;
      seen.set(key, [...(seen.get(key) || []), { name, value: message.value.toString() }]);
    } });
    return c;
  };

  await send(0, 20);
  const c1 = await member("c1");
  await until("c1 to own both partitions", () => (assignments.c1 || []).length === 2);
  const c2 = await member("c2");
  await until("a rebalance to one partition each",
              () => (assignments.c1 || []).length === 1 && (assignments.c2 || []).length === 1);
  const split = { ...assignments };
  await send(20, 40);
  await until("every record", () => seen.size === 40);
  const committed = async () => {
    const [t] = await admin.fetchOffsets({ groupId: GROUP, topics: [TOPIC] });
    return Object.fromEntries(t.partitions.map((p) => [p.partition, Number(p.offset)]));
  };
  await until("commits at the end offsets", async () => {
    const o = await committed();
    return o[0] === 20 && o[1] === 20;
  });
  const { groups: [described] } = await admin.describeGroups([GROUP]);
  const listed = (await admin.listGroups()).groups;
  await c1.disconnect();
  await c2.disconnect();
  const { groups: [afterLeave] } = await admin.describeGroups([GROUP]);

  await send(40, 44); // only these are new to the group
  const late = [];
  const c3 = kafka.consumer(consumerOpts);
  await c3.connect();
  await c3.subscribe({ topic: TOPIC, fromBeginning: true });
  await c3.run({ eachMessage: async ({ partition, message }) => { late.push(`${partition}:${message.offset}`); } });
  await until("the resumed member to read the new records", () => late.length >= 4);
  await sleep(200);
  await c3.disconnect();
  await producer.disconnect();
  const finalOffsets = await committed();
  await admin.disconnect();
  return {
    seen: seen.size,
    values: [...seen.values()].map((v) => v[0].value).sort(),
    assignments: split,
    committedAfterRun: finalOffsets,
    described: { state: described.state, protocolType: described.protocolType, protocol: described.protocol,
                 members: described.members.length },
    listed: listed.map((g) => [g.groupId, g.protocolType]),
    afterLeave: afterLeave.state,
    late: late.sort(),
  };
}

const broker = process.argv[2];
const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: `timed out after ${DEADLINE_MS} ms` }));
  process.exit(2);
}, DEADLINE_MS);
try {
  const result = await main(broker);
  console.log(JSON.stringify(result));
  clearTimeout(timer);
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.stack ? e.stack : e) }));
  process.exit(1);
}
