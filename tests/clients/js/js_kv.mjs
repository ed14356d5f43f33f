// Key-value with nats.js (js.views.kv): put/get/create/update/delete/purge/keys/history/watch.
import { run } from "./_common.mjs";

await run(async (open) => {
  const nc = await open();
  const js = nc.jetstream();
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const kv = await js.views.kv("jsbucket", { history: 5 });
  const status = await kv.status();
  const r1 = await kv.put("a", enc.encode("1"));
  const r2 = await kv.put("a", enc.encode("2"));
  const got = await kv.get("a");
  const missing = await kv.get("nope");
  let createErr = null;
  try {
    await kv.create("a", enc.encode("x"));
  } catch (e) {
    createErr = e.message;
  }
  const created = await kv.create("b", enc.encode("b1"));
  let updateErr = null;
  try {
    await kv.update("a", enc.encode("3"), 1);
  } catch (e) {
    updateErr = e.message;
  }
  const updated = await kv.update("a", enc.encode("3"), r2);

  const watched = [];
  const watcher = await kv.watch({ key: "a" });
  const done = (async () => {
    for await (const e of watcher) {
      watched.push([e.key, e.operation, dec.decode(e.value), e.revision]);
      if (watched.length === 3) break;
    }
  })();
  await kv.put("a", enc.encode("4"));
  await kv.delete("a");
  await done;

  await kv.put("c", enc.encode("c1"));
  await kv.purge("c");
  const afterDelete = await kv.get("a");
  const keys = [];
  for await (const k of await kv.keys()) keys.push(k);
  const history = [];
  for await (const e of await kv.history({ key: "a" })) history.push([e.operation, dec.decode(e.value)]);
  return {
    direct: status.streamInfo.config.allow_direct,
    bucket: [status.bucket, status.history, status.streamInfo.config.name],
    revisions: [r1, r2, created, updated],
    got: [got.key, dec.decode(got.value), got.revision, got.operation],
    missing,
    create_err: createErr,
    update_err: updateErr,
    watched,
    after_delete: afterDelete ? [afterDelete.operation, afterDelete.revision] : null,
    keys: keys.sort(),
    history,
  };
});
