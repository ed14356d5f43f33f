// kafkajs 2.2.4 idempotent producer: InitProducerId v0/v1 without a transactional id, then sequenced batches.
import { runKafka } from "./_kafka.mjs";

await runKafka(async (kafka) => {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const offsets = [];
  for (let i = 0; i < 5; i++) {
    const messages = [];
    for (let j = 0; j < 10; j++) messages.push({ value: `m${i * 10 + j}` });
    const [res] = await producer.send({ topic: "kjs-idem", acks: -1, messages });
    offsets.push(Number(res.baseOffset));
  }
  await producer.disconnect();
  return { offsets };
});
