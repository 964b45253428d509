// Every HTTP/2 request Node makes (so every gRPC call) binds its connect callback with
// `AsyncResource.prototype.bind`. On Node 20, that bind builds two fresh `util.deprecate` wrappers for
// the bound function's deprecated `asyncResource` property (DEP0172), and each wrapper has its
// prototype set to a fresh function (nodejs/node #58218): 10–20 µs of CPU per call, and a warm poll's
// CPU is 14–18% lower without it (1,000 miners, the core alone: medians of 8 polls each, taken in turn,
// 2,045 → 1,674 ms and 2,382 → 2,042 ms). Later Node 22 and 24 releases stopped changing the wrappers'
// prototype (22.23.5 and 24.22.3 do not); Node 25 dropped the property. Where the slow bind is found
// (Node 20.20 here), the core puts in one that behaves the same (same scope, `this`, arguments and
// `length`; the same `asyncResource` accessor, with the same DEP0172 warning once per process) but
// shares two wrappers made once, keeping each bound function's resource in a WeakMap.
import { AsyncResource } from 'node:async_hooks';
import { deprecate } from 'node:util';

const DEP0172 = 'The asyncResource property on bound functions is deprecated';

type Bind = (this: AsyncResource, fn: (...args: unknown[]) => unknown, thisArg?: unknown) => (...args: unknown[]) => unknown;

/**
 * Whether this Node's `AsyncResource.prototype.bind` is the slow one: each bound function's
 * `asyncResource` accessor is a new deprecate wrapper whose prototype was set to the wrapped function
 * (not `Function.prototype`).
 */
export function slowAsyncResourceBind(): boolean {
  const getter = () => Object.getOwnPropertyDescriptor(new AsyncResource('bos-fleet-probe').bind(() => undefined), 'asyncResource')?.get;
  const get = getter();
  return get !== undefined && get !== getter() && Object.getPrototypeOf(get) !== Function.prototype;
}

let installed: boolean | undefined;

/** Puts in the fast bind where this Node's is the slow one (looked at once per thread); says whether it is in. */
export function useFastAsyncResourceBind(): boolean {
  if (installed !== undefined) return installed;
  if (!slowAsyncResourceBind()) return (installed = false);
  const resourceOf = new WeakMap<object, AsyncResource>();
  const get = deprecate(function (this: object) {
    return resourceOf.get(this);
  }, DEP0172, 'DEP0172');
  const set = deprecate(function (this: object, resource: AsyncResource) {
    resourceOf.set(this, resource);
  }, DEP0172, 'DEP0172');
  const bind: Bind = function (fn, thisArg) {
    if (typeof fn !== 'function') throw Object.assign(new TypeError(`The "fn" argument must be of type function. Received ${typeof fn}`), { code: 'ERR_INVALID_ARG_TYPE' });
    let bound: (...args: unknown[]) => unknown;
    if (thisArg === undefined) {
      const resource = this;
      bound = function (this: unknown, ...args: unknown[]) {
        return resource.runInAsyncScope(fn, this, ...args);
      };
    } else {
      bound = this.runInAsyncScope.bind(this, fn, thisArg) as (...args: unknown[]) => unknown;
    }
    resourceOf.set(bound, this);
    // Both forms of `bound` have length 0 (a rest parameter; runInAsyncScope's two bound away), and
    // each defineProperty costs ~1 µs: `length` is set only when it differs.
    if (fn.length !== 0) Object.defineProperty(bound, 'length', { configurable: true, enumerable: false, value: fn.length, writable: false });
    Object.defineProperty(bound, 'asyncResource', { configurable: true, enumerable: true, get, set });
    return bound;
  };
  (AsyncResource.prototype as unknown as { bind: Bind }).bind = bind;
  installed = true;
  return true;
}
