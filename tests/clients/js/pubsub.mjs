// Publish 10 messages on one connection, receive them on another; wildcards `*` and `>`; binary payload.
import { run, take } from "./_common.mjs";

await run(async (open) => {
  const pub = await open();
  const subc = await open();
  const enc = new TextEncoder();
  const exact = subc.subscribe("js.greet");
  const star = subc.subscribe("js.*");
  const tail = subc.subscribe("js.>");
  const bin = subc.subscribe("js.bin");
  await subc.flush();
  for (let i = 0; i < 10; i++) pub.publish("js.greet", enc.encode(`hello ${i}`));
  pub.publish("js.deep.down", enc.encode("deep"));
  const payload = new Uint8Array(70000).map((_, i) => i % 256);
  pub.publish("js.bin", payload);
  await pub.flush();
  const binMsg = (await take(bin, 1, (m) => Array.from(m.data)))[0];
  return {
    exact: (await take(exact, 10)).map((m) => m.data),
    star: (await take(star, 11)).map((m) => m.subject),
    tail: (await take(tail, 12)).map((m) => m.subject),
    binary_ok: binMsg.data.length === payload.length && binMsg.data.every((b, i) => b === payload[i]),
  };
});
