// The core's AsyncResource.prototype.bind (Node 20's costs 10–20 µs per gRPC call): it is put in where
// Node's is the slow one, and it behaves as Node's does.
import { AsyncResource, executionAsyncId, triggerAsyncId } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { slowAsyncResourceBind, useFastAsyncResourceBind } from '../src/core/async-bind.js';
import { FleetCore } from '../src/core/index.js';

type AnyFn = (...args: unknown[]) => unknown;
type Bind = (this: AsyncResource, fn: AnyFn, thisArg?: unknown) => AnyFn & { asyncResource?: unknown };

const nodeBind = AsyncResource.prototype.bind as unknown as Bind;
const slowBefore = slowAsyncResourceBind();

/** What a bound function does and shows, called plainly and with a `this`. */
function behaviour(bind: Bind) {
  const resource = new AsyncResource('bos-fleet-test');
  const seen: unknown[] = [];
  function fn(this: unknown, a: unknown, b: unknown, c: unknown) {
    seen.push({ self: this, args: [a, b, c], inScope: executionAsyncId() === resource.asyncId(), trigger: triggerAsyncId() === resource.triggerAsyncId() });
    return `r:${String(a)}`;
  }
  const plain = bind.call(resource, fn as AnyFn);
  const withThis = bind.call(resource, fn as AnyFn, 'bound-this');
  const caller = { name: 'caller' };
  const results = [plain.call(caller, 1, 2, 3), withThis.call(caller, 4, 5, 6), plain(7)];
  const described = (f: object) => {
    const d = Object.getOwnPropertyDescriptor(f, 'asyncResource');
    return { length: (f as AnyFn).length, keys: Object.keys(f), enumerable: d?.enumerable, configurable: d?.configurable, accessor: typeof d?.get === 'function' && typeof d?.set === 'function' };
  };
  return { results, seen, plain: described(plain), withThis: described(withThis), ofZeroArity: (bind.call(resource, () => 1) as AnyFn).length };
}

describe("the core's AsyncResource bind", () => {
  it('is put in where Node builds two deprecate wrappers, with a changed prototype, per bind (Node 20: every gRPC call), and only there', () => {
    expect(useFastAsyncResourceBind()).toBe(slowBefore);
    expect(slowAsyncResourceBind()).toBe(false); // put in, or Node's is not the slow one
    expect(useFastAsyncResourceBind()).toBe(slowBefore); // once
    // A core puts it in too (each worker thread has its own).
    new FleetCore().close();
    expect(slowAsyncResourceBind()).toBe(false);
    if (process.versions.node.startsWith('20.')) expect(slowBefore).toBe(true);
  });

  it("runs the function in the resource's scope with the same this, arguments, result, length and asyncResource property as Node's", async () => {
    useFastAsyncResourceBind();
    const ours = AsyncResource.prototype.bind as unknown as Bind;
    const warnings: Error[] = [];
    const onWarning = (w: Error) => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const resource = new AsyncResource('bos-fleet-test');
      const bound = ours.call(resource, () => 1);
      expect(bound.asyncResource).toBe(resource); // before Node's: the once-per-process warning is ours
      const other = new AsyncResource('other');
      bound.asyncResource = other;
      expect(bound.asyncResource).toBe(other);
      await new Promise((r) => setTimeout(r, 20));
      if (slowBefore) expect(warnings.map((w) => (w as Error & { code?: string }).code)).toEqual(['DEP0172']);
      expect(behaviour(ours)).toEqual(behaviour(nodeBind));
      const b = behaviour(ours);
      expect(b.results).toEqual(['r:1', 'r:4', 'r:7']);
      expect(b.seen).toEqual([
        { self: { name: 'caller' }, args: [1, 2, 3], inScope: true, trigger: true },
        { self: 'bound-this', args: [4, 5, 6], inScope: true, trigger: true },
        { self: undefined, args: [7, undefined, undefined], inScope: true, trigger: true },
      ]);
      if (slowBefore) expect(b.plain).toEqual({ length: 3, keys: ['asyncResource'], enumerable: true, configurable: true, accessor: true });
      expect(() => ours.call(new AsyncResource('x'), 'not a function' as unknown as AnyFn)).toThrow(/"fn" argument must be of type function/);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
