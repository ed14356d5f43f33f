// kafkajs 2.2.4 transactional producer: commit with sendOffsets, abort, commit; a second producer with the same
// transactionalId fences the first.
import { runKafka } from "./_kafka.mjs";

await runKafka(async (kafka) => {
  const producer = kafka.producer({ transactionalId: "kjs-txn", idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  let txn = await producer.transaction();
  await txn.send({ topic: "kjs-tx", messages: [{ value: "c1" }, { value: "c2" }] });
  await txn.sendOffsets({ consumerGroupId: "kjs-group",
                          topics: [{ topic: "kjs-tx", partitions: [{ partition: 0, offset: "2" }] }] });
  await txn.commit();
  txn = await producer.transaction();
  await txn.send({ topic: "kjs-tx", messages: [{ value: "a1" }] });
  await txn.abort();
  txn = await producer.transaction();
  await txn.send({ topic: "kjs-tx", messages: [{ value: "c3" }] });
  await txn.commit();

  // Fencing: a new producer with the same transactionalId; the old one's open transaction is aborted.
  const zombie = await producer.transaction();
  await zombie.send({ topic: "kjs-tx", messages: [{ value: "zombie" }] });
  const fresh = kafka.producer({ transactionalId: "kjs-txn", idempotent: true, maxInFlightRequests: 1 });
  await fresh.connect();
  const t2 = await fresh.transaction();
  await t2.send({ topic: "kjs-tx", messages: [{ value: "c4" }] });
  await t2.commit();
  let fenced = null;
  try {
    await zombie.commit();
  } catch (e) {
    fenced = e.type || e.name;
  }
  await fresh.disconnect();
  await producer.disconnect().catch(() => {});
  return { fenced };
});
