// kafkajs 2.2.4 with the codecs it ships (none, gzip; snappy/lz4/zstd need codec packages kafkajs leaves to
// the user): `node kafkajs_codecs.mjs 127.0.0.1:PORT`. Produces 20 keyed records with headers per codec,
// reads them back with a consumer group from the beginning, and reports what came back per topic.
import { CompressionTypes } from "kafkajs";
import { runKafka } from "./_kafka.mjs";

const CODECS = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP };
const N = 20;

await runKafka(async (kafka) => {
  const producer = kafka.producer();
  await producer.connect();
  for (const [name, codec] of Object.entries(CODECS)) {
    await producer.send({ topic: `kjs-codec-${name}`, acks: -1, compression: codec, messages: Array.from(
      { length: N }, (_, i) => ({ key: `k${i}`, value: `${name}-${i}-`.repeat(20), headers: { n: `${i}` } })) });
  }
  await producer.disconnect();
  const got = {};
  const consumer = kafka.consumer({ groupId: "kjs-codecs", maxWaitTimeInMs: 100 });
  await consumer.connect();
  for (const name of Object.keys(CODECS)) {
    got[`kjs-codec-${name}`] = [];
    await consumer.subscribe({ topic: `kjs-codec-${name}`, fromBeginning: true });
  }
  let total = 0;
  await new Promise((resolve, reject) => {
    consumer.run({ eachMessage: async ({ topic, message }) => {
      got[topic].push([message.key.toString(), message.value.toString(), message.headers.n.toString(),
                       Number(message.offset)]);
      if (++total === N * Object.keys(CODECS).length) resolve();
    } }).catch(reject);
  });
  await consumer.disconnect();
  return { got };
});
