// Request/reply: a responder on one connection, 20 sequential and 20 concurrent requests from another,
// and a request nobody answers (nats.js reports no responders with code 503).
import { run } from "./_common.mjs";

await run(async (open) => {
  const responder = await open();
  const requester = await open();
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const sub = responder.subscribe("js.svc.echo");
  (async () => {
    for await (const m of sub) m.respond(enc.encode("pong:" + dec.decode(m.data)));
  })();
  await responder.flush();
  const sequential = [];
  for (let i = 0; i < 20; i++) {
    const r = await requester.request("js.svc.echo", enc.encode(String(i)), { timeout: 3000 });
    sequential.push(dec.decode(r.data));
  }
  const concurrent = (await Promise.all(
    Array.from({ length: 20 }, (_, i) => requester.request("js.svc.echo", enc.encode("c" + i), { timeout: 3000 })),
  )).map((r) => dec.decode(r.data));
  let noResponders = null;
  try {
    await requester.request("js.nobody.home", enc.encode("?"), { timeout: 3000 });
    noResponders = "answered";
  } catch (e) {
    noResponders = e.code;
  }
  return { sequential, concurrent, no_responders: noResponders };
});
