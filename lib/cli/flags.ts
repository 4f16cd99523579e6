// Command-line flags derived from a zod object schema: every field `fooBar`
// becomes `--foo-bar`, typed by the schema (numbers, booleans, enums, lists
// of numbers as "1,2,3"), so flags and JSON configs cannot drift apart.
import { UsamError } from '../errors.js';
import { z } from 'zod';

type Kind = { type: 'number' | 'boolean' | 'string' | 'numbers' | 'strings'; choices?: string[]; fallback?: unknown };

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Choices a schema lists in its metadata, `.meta({ choices: () => [...] })`, read when asked (the names of registered rules). */
const choicesOf = (s: z.ZodType): string[] | undefined => (s.meta() as { choices?: () => string[] } | undefined)?.choices?.();

function kindOf(schema: z.ZodType): Kind {
  let s = schema as z.ZodType & { _zod: { def: { type: string; innerType?: z.ZodType; defaultValue?: unknown; element?: z.ZodType; entries?: Record<string, string> } } };
  let fallback: unknown;
  let listed = choicesOf(s);
  while (s._zod.def.type === 'default' || s._zod.def.type === 'optional') {
    if (s._zod.def.type === 'default') fallback = s._zod.def.defaultValue;
    s = s._zod.def.innerType as typeof s;
    listed ??= choicesOf(s);
  }
  if (listed) return { type: s._zod.def.type === 'array' ? 'strings' : 'string', choices: listed, fallback };
  switch (s._zod.def.type) {
    case 'number':
      return { type: 'number', fallback };
    case 'boolean':
      return { type: 'boolean', fallback };
    case 'enum':
      return { type: 'string', choices: Object.values(s._zod.def.entries!), fallback };
    case 'array': {
      // a list of names (an enum's values) or of numbers, comma-separated on the command line
      const element = kindOf(s._zod.def.element!);
      return element.choices ? { type: 'strings', choices: element.choices, fallback } : { type: 'numbers', fallback };
    }
    default:
      return { type: 'string', fallback };
  }
}

export function flagTable(schema: z.ZodObject): { flag: string; key: string; kind: Kind }[] {
  return Object.entries(schema.shape).map(([key, s]) => ({ flag: `--${kebab(key)}`, key, kind: kindOf(s as z.ZodType) }));
}

/** Parses `--flag value` / `--flag=value` / `--bool` / `--no-bool` into an object of the schema's keys. */
export function parseFlags(schema: z.ZodObject, argv: string[], extra: string[] = [], help = 'usam train --help'): { values: Record<string, unknown>; extra: Record<string, string | true> } {
  const table = new Map(flagTable(schema).map((e) => [e.flag, e]));
  const values: Record<string, unknown> = {};
  const extras: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new UsamError(`unexpected argument '${arg}'; flags look like --epochs 3`);
    let [name, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (extra.includes(name)) {
      extras[name] = inline ?? (argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[++i] : true);
      continue;
    }
    let negate = false;
    if (!table.has(name) && name.startsWith('--no-') && table.get(`--${name.slice(5)}`)?.kind.type === 'boolean') {
      negate = true;
      name = `--${name.slice(5)}`;
    }
    const entry = table.get(name);
    if (!entry) throw new UsamError(`unknown flag '${name}'; see '${help}' for the flags`);
    const { type } = entry.kind;
    if (type === 'boolean') {
      values[entry.key] = negate ? false : inline === undefined ? true : inline === 'true';
      continue;
    }
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new UsamError(`flag ${name} needs a value`);
    if (type === 'number') {
      const n = Number(raw);
      if (raw.trim() === '' || Number.isNaN(n)) throw new UsamError(`flag ${name} takes a number, got '${raw}'`);
      values[entry.key] = n;
    } else if (type === 'numbers') {
      values[entry.key] = raw.split(',').filter(Boolean).map((v) => {
        const n = Number(v);
        if (Number.isNaN(n)) throw new UsamError(`flag ${name} takes numbers separated by commas, got '${raw}'`);
        return n;
      });
    } else if (type === 'strings') {
      const list = raw.split(',').filter(Boolean);
      const bad = list.filter((v) => !entry.kind.choices!.includes(v));
      if (bad.length > 0) throw new UsamError(`flag ${name}: unknown ${bad.map((b) => `'${b}'`).join(', ')}; choose from ${entry.kind.choices!.join(', ')} (comma-separated)`);
      values[entry.key] = list;
    } else values[entry.key] = raw;
  }
  return { values, extra: extras };
}

export function flagHelp(schema: z.ZodObject): string {
  return flagTable(schema)
    .map(({ flag, kind }) => {
      const what = kind.type === 'strings' ? `${kind.choices!.join('|')},...` : kind.choices ? kind.choices.join('|') : kind.type === 'numbers' ? 'n,n,...' : kind.type === 'boolean' ? '' : kind.type;
      const def = kind.fallback === undefined ? '' : `  (default ${Array.isArray(kind.fallback) ? kind.fallback.join(',') : String(kind.fallback)})`;
      return `  ${`${flag} ${what}`.padEnd(44)}${def}`;
    })
    .join('\n');
}
