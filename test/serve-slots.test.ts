// serve's slots (src/serve/slots.ts) as a unit: the limit, turns in the order asked, giving up
// a wait, a new limit. The processes' view of the same is in serve.test.ts.
import { describe, expect, it } from 'vitest';
import { Slots } from '../src/serve/slots.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('Slots', () => {
  it('never hands out more than the limit, and gives freed slots in the order they were asked for', async () => {
    const slots = new Slots(2);
    const got: string[] = [];
    const ask = (name: string) => slots.acquire(new AbortController().signal).then((release) => (got.push(name), release));
    const a = ask('a');
    const b = ask('b');
    const c = ask('c');
    const d = ask('d');
    await tick();
    expect(got).toEqual(['a', 'b']);
    expect(slots.inUse).toBe(2);
    (await a)();
    // a asks again at once: it goes behind c and d, which were waiting
    const a2 = ask('a');
    await tick();
    expect(got).toEqual(['a', 'b', 'c']);
    (await b)();
    await tick();
    expect(got).toEqual(['a', 'b', 'c', 'd']);
    (await c)();
    await tick();
    expect(got).toEqual(['a', 'b', 'c', 'd', 'a']);
    expect(slots.inUse).toBe(2);
    (await d)();
    (await a2)();
    expect(slots.inUse).toBe(0);
  });

  it('a release counts once; an aborted wait takes no slot and rejects with its reason', async () => {
    const slots = new Slots(1);
    const release = await slots.acquire(new AbortController().signal);
    release();
    release();
    expect(slots.inUse).toBe(0);
    const held = await slots.acquire(new AbortController().signal);
    const giveUp = new AbortController();
    const waiting = slots.acquire(giveUp.signal);
    giveUp.abort(new Error('not now'));
    await expect(waiting).rejects.toThrow('not now');
    held();
    expect(slots.inUse).toBe(0);
    const already = new AbortController();
    already.abort(new Error('too late'));
    await expect(slots.acquire(already.signal)).rejects.toThrow('too late');
    expect(slots.inUse).toBe(0);
  });

  it('a larger limit hands out slots at once; a smaller one as runs end', async () => {
    const slots = new Slots(1);
    const releases = [] as Array<() => void>;
    const pending = [0, 1, 2].map(() => slots.acquire(new AbortController().signal).then((r) => releases.push(r)));
    await tick();
    expect(slots.inUse).toBe(1);
    slots.resize(3);
    await Promise.all(pending);
    expect(slots.inUse).toBe(3);
    slots.resize(1);
    let fourth = false;
    void slots.acquire(new AbortController().signal).then(() => (fourth = true));
    releases[0]!();
    releases[1]!();
    await tick();
    expect(fourth).toBe(false);
    releases[2]!();
    await tick();
    expect(fourth).toBe(true);
  });
});
