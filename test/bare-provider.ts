/** A third-party provider for tests: only the required members of the contract. */
import { netdevError, type Provider, type ProviderDevice } from '../dist/index.js';

/** A provider with only the required members, and whatever `extra` adds to its devices (and `more` to the provider). */
export function bareProvider(prefix: string, extra: Partial<ProviderDevice> = {}, more: Partial<Provider> = {}): Provider {
  return {
    type: prefix.slice(0, -1),
    prefix,
    validateName(suffix) {
      if (!/^\w+$/.test(suffix)) throw netdevError('EINVAL', 'word characters only');
    },
    create: () => ({
      flags: 0,
      getConfig: () => ({}),
      setConfig() {},
      updateFlags(this: { flags: number }, off: number, on: number) {
        const old = this.flags;
        this.flags = (old & ~off) | on;
        return old;
      },
      destroy() {},
      ...extra,
    }),
    ...more,
  };
}
