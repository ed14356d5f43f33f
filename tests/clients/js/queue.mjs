// Queue groups: 3 members of "workers" on separate connections and one plain subscriber; 300 messages.
import { run } from "./_common.mjs";

await run(async (open) => {
  const pub = await open();
  const members = [await open(), await open(), await open()];
  const plainConn = await open();
  const n = 300;
  const counts = [0, 0, 0];
  const seen = [];
  let plain = 0;
  const done = [];
  members.forEach((nc, i) => {
    const sub = nc.subscribe("js.work", { queue: "workers" });
    done.push((async () => { for await (const m of sub) { counts[i]++; seen.push(new TextDecoder().decode(m.data)); } })());
  });
  const ps = plainConn.subscribe("js.work");
  done.push((async () => { for await (const _ of ps) plain++; })());
  for (const nc of [...members, plainConn]) await nc.flush();
  const enc = new TextEncoder();
  for (let i = 0; i < n; i++) pub.publish("js.work", enc.encode(String(i)));
  await pub.flush();
  const until = Date.now() + 10000;
  while ((counts[0] + counts[1] + counts[2] < n || plain < n) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 200)); // a duplicate would show up now
  return { counts, unique: new Set(seen).size, total: seen.length, plain, n };
});
