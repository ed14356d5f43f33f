// Headers: single and multi-valued headers round-trip; a reply carries headers back; no headers = null.
import { headers } from "nats";
import { run, take } from "./_common.mjs";

await run(async (open) => {
  const nc = await open();
  const enc = new TextEncoder();
  const sub = nc.subscribe("js.hdr");
  await nc.flush();
  const h = headers();
  h.set("Foo", "bar");
  h.append("Multi", "one");
  h.append("Multi", "two");
  nc.publish("js.hdr", enc.encode("with"), { headers: h });
  const h2 = headers();
  h2.set("Only", "headers");
  nc.publish("js.hdr", new Uint8Array(0), { headers: h2 });
  nc.publish("js.hdr", enc.encode("without"));
  const got = [];
  for await (const m of sub) {
    got.push({
      data: new TextDecoder().decode(m.data),
      headers: m.headers ? { Foo: m.headers.values("Foo"), Multi: m.headers.values("Multi"),
                            Only: m.headers.values("Only") } : null,
    });
    if (got.length === 3) break;
  }
  const svc = nc.subscribe("js.hdr.svc");
  (async () => {
    for await (const m of svc) {
      const rh = headers();
      rh.set("Seen", m.headers ? m.headers.get("Ask") : "?");
      m.respond(m.data, { headers: rh });
    }
  })();
  const ask = headers();
  ask.set("Ask", "please");
  const reply = await nc.request("js.hdr.svc", enc.encode("q"), { timeout: 3000, headers: ask });
  return { messages: got, reply_seen: reply.headers ? reply.headers.get("Seen") : null };
});
