// kafkajs 2.2.4 admin against the Kafka admin APIs: createTopics with configs, createPartitions,
// describeConfigs, alterConfigs, deleteTopicRecords, describeCluster, deleteTopics.
import kafkajs from "kafkajs";
import { runKafka } from "./_kafka.mjs";

const { ConfigResourceTypes } = kafkajs;

await runKafka(async (kafka) => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic: "kjs-admin", numPartitions: 1,
                                          configEntries: [{ name: "retention.ms", value: "3600000" }] }] });
    await admin.createPartitions({ topicPartitions: [{ topic: "kjs-admin", count: 3 }] });
    let decrease = null;
    try {
      await admin.createPartitions({ topicPartitions: [{ topic: "kjs-admin", count: 2 }] });
    } catch (e) {
      decrease = e.message;
    }
    const meta = await admin.fetchTopicMetadata({ topics: ["kjs-admin"] });
    const describe = async () => {
      const res = await admin.describeConfigs({ includeSynonyms: false, resources: [
        { type: ConfigResourceTypes.TOPIC, name: "kjs-admin", configNames: ["retention.ms", "cleanup.policy"] }] });
      return Object.fromEntries(res.resources[0].configEntries.map((c) => [c.configName,
        [c.configValue, c.isDefault, c.configSource]]));
    };
    const before = await describe();
    await admin.alterConfigs({ validateOnly: false, resources: [
      { type: ConfigResourceTypes.TOPIC, name: "kjs-admin", configEntries: [{ name: "cleanup.policy", value: "compact,delete" }] }] });
    const after = await describe();
    let invalid = null;
    try {
      await admin.alterConfigs({ validateOnly: false, resources: [
        { type: ConfigResourceTypes.TOPIC, name: "kjs-admin", configEntries: [{ name: "retention.ms", value: "soon" }] }] });
    } catch (e) {
      invalid = e.message;
    }
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: "kjs-admin", messages: Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: `v${i}`, partition: 0 })) });
    await producer.disconnect();
    await admin.deleteTopicRecords({ topic: "kjs-admin", partitions: [{ partition: 0, offset: "4" }] });
    const offsets = await admin.fetchTopicOffsets("kjs-admin");
    const p0 = offsets.find((o) => o.partition === 0);
    const cluster = await admin.describeCluster();
    await admin.deleteTopics({ topics: ["kjs-admin"] });
    const topics = await admin.listTopics();
    return { decrease, partitions: meta.topics[0].partitions.length, before, after, invalid,
             low: p0.low, high: p0.high, clusterId: cluster.clusterId, brokers: cluster.brokers.length,
             controller: cluster.controller, remaining: topics.filter((t) => t === "kjs-admin") };
  } finally {
    await admin.disconnect();
  }
});
