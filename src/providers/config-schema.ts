/**
 * A provider's config schema: each key it knows, with one doc line, its default and how a value is
 * checked and read back.  One schema drives the provider's setConfig validation (every key of a
 * change is checked before any applies; an unknown key is EINVAL listing the known ones, a bad
 * value EINVAL naming the key), its getConfig (every key that has a value or a default) and what
 * `netdev show` says of each key.
 */
import { netdevError } from '../common/errors.js';
import type { Config } from './contract.js';

/** One config key of devices of type D whose parsed value is T. */
export interface ConfigKey<D, T> {
  /** One line saying what the key does, for `netdev show`. */
  readonly doc: string;
  /** What getConfig reports while the key has no value of its own; none: the key is reported only once set. */
  readonly default?: string;
  /** Checks `value` for `device` and returns it parsed; a bad value throws badValue() (or a NetdevError). */
  parse(value: string, device: D): T | Promise<T>;
  /** The key's value now; undefined or '' if it has none. */
  current(device: D): string | undefined;
}

/** The keys of a schema whose parsed values are V, by name. */
export type ConfigKeys<D, V> = { readonly [K in keyof V]: ConfigKey<D, V[K]> };

/** What `netdev show` says of a key: its name, default (if any) and doc line. */
export interface ConfigKeyInfo {
  readonly name: string;
  readonly default: string | undefined;
  readonly doc: string;
}

/** Why a value is refused, without the key's name (the schema adds it); `code` is the errno name. */
class ConfigValueError extends Error {
  constructor(
    readonly text: string,
    readonly code: string,
  ) {
    super(text);
  }
}

/** Refuses a value: `text` says why, after the key's name ("must be ...", "cannot ..."). */
export function badValue(text: string, code = 'EINVAL'): never {
  throw new ConfigValueError(text, code);
}

/** Refuses `value`, which is not `expected` ("must be EXPECTED, not VALUE"). */
export function mustBe(expected: string, value: string): never {
  badValue(`must be ${expected}, not ${JSON.stringify(value)}`);
}

/** "a, b or c". */
function alternatives(words: readonly string[]): string {
  return words.length < 2 ? words.join('') : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`;
}

/** A parser that takes one of `choices` (and returns it). */
export function oneOf<T extends string>(...choices: T[]): (value: string) => T {
  return (value) => (choices.includes(value as T) ? (value as T) : mustBe(alternatives(choices), value));
}

/** The schema of the config of one provider's devices ('dummy' devices), whose keys parse to V. */
export class ConfigSchema<D, V extends object> {
  private readonly names: readonly (keyof V & string)[];

  constructor(
    private readonly devices: string,
    private readonly keys: ConfigKeys<D, V>,
  ) {
    this.names = Object.keys(keys) as (keyof V & string)[];
  }

  /** Every key, in the order declared, with its default and doc line. */
  describe(): ConfigKeyInfo[] {
    return this.names.map((name) => ({ name, default: this.keys[name].default, doc: this.keys[name].doc }));
  }

  /**
   * Checks every key of `changes` for `device` and returns their parsed values, applying nothing:
   * an unknown key is EINVAL listing the known ones, a bad value is EINVAL (or the code the key's
   * check gives) naming the key.
   */
  async parse(changes: Config, device: D): Promise<Partial<V>> {
    const unknown = Object.keys(changes).find((key) => !Object.hasOwn(this.keys, key));
    if (unknown !== undefined) {
      const known = this.names.length ? `know: ${this.names.join(', ')}` : 'have none';
      throw netdevError('EINVAL', `unknown config key '${unknown}' (${this.devices} devices ${known})`);
    }
    const parsed: Partial<V> = {};
    for (const [name, value] of Object.entries(changes) as [keyof V & string, string][]) {
      try {
        parsed[name] = await this.keys[name].parse(value, device);
      } catch (error) {
        if (!(error instanceof ConfigValueError)) throw error;
        throw netdevError(error.code, `config key '${name}' ${error.text}`);
      }
    }
    return parsed;
  }

  /** getConfig: every key that has a value, or else a default, with it, in the order declared. */
  values(device: D): Config {
    const config: Config = {};
    for (const name of this.names) {
      const value = this.keys[name].current(device) || this.keys[name].default;
      if (value !== undefined) config[name] = value;
    }
    return config;
  }
}

