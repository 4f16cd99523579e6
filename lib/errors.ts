// The errors a caller can catch by kind. Every error the library throws is a
// UsamError; the kinds below are what a program reacts to differently: fix
// the input (ConfigError, and its ArgumentError for a function's argument),
// lower the step size (NonFiniteError, DivergenceError), install/build the
// addon (AddonLoadError, lib/native/load.ts), or read what LibTorch said
// (NativeError). Each carries the fields its message names, so a caller need
// not parse the message.
import type { z } from 'zod';

/** The base class of the library's own errors. */
export class UsamError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** One invalid field: its path (`sharpness.rho`, `groups[1].lr`) and what is wrong. */
export interface ConfigIssue {
  path: string;
  message: string;
}

/**
 * Invalid input: options, configs, specs, flags, files that do not parse.
 * `issues` lists every field at fault (path and message); the message has
 * them one per line.
 */
export class ConfigError extends UsamError {
  readonly issues: ConfigIssue[];
  constructor(
    /** what was being read: 'optimizer options', 'training config', 'sharpness config', ... */
    readonly subject: string,
    /** the fields at fault; or one message, used as the whole message (for checks across fields) */
    issues: ConfigIssue[] | string,
    /** the whole message, where the issues' list is not it */
    message?: string,
  ) {
    // a string: one message of its own, the subject as its own prefix
    const list = typeof issues === 'string' ? [{ path: '', message: issues }] : Array.isArray(issues) ? issues : [{ path: '', message: String(issues) }];
    super(message ?? (typeof issues === 'string' ? issues : `invalid ${subject}:\n${list.map((i) => `  - ${i.path || '(root)'}: ${i.message}`).join('\n')}`));
    this.issues = list;
  }
}

/**
 * A function or method was given an argument it cannot take: the wrong type,
 * a disposed tensor or object, a missing argument. The message reads
 * `fn: argument 'name' ...`, with what it got and what it expects; `issues`
 * has one entry, its path the argument's name.
 */
export class ArgumentError extends ConfigError {
  constructor(
    /** the function or method called: 'mlp', 'Model.hvp', 'hessian(...).trace' */
    readonly fn: string,
    /** the argument's name, as in the function's signature */
    readonly argument: string,
    /** what is wrong with it: 'must be a Tensor, got the number 42' */
    problem: string,
  ) {
    super(`arguments of ${fn}`, [{ path: argument, message: problem }], `${fn}: argument '${argument}' ${problem}`);
  }
}

/**
 * An error the native addon raised: LibTorch's own message (a shape a layer
 * does not take, a device that is not there) or the addon's check of what
 * reached it. The addon throws these itself (lib/native/load.ts hands it the
 * class).
 */
export class NativeError extends UsamError {}

/**
 * A step met NaN or Inf (the loss, a perturbed loss, the gradient, a user
 * function's value). Nothing was updated: the step left the parameters,
 * statistics, counters and generator as they were.
 */
export class NonFiniteError extends UsamError {
  constructor(
    message: string,
    /** the optimizer step's number, counting from 1 (the step that failed) */
    readonly step: number,
    /** what was not finite: 'loss', 'perturbed loss', 'gradient', 'psi', ... */
    readonly quantity: string,
    readonly value: number,
  ) {
    super(message);
  }
}

/** Training stopped because the loss grew past the divergence limit (the Trainer's `divergence` option). */
export class DivergenceError extends UsamError {
  constructor(
    message: string,
    readonly epoch: number,
    readonly step: number,
    /** the recent mean training loss over the first steps' */
    readonly ratio: number,
    readonly limit: number,
  ) {
    super(message);
  }
}

/** zod's issues as ConfigIssues, their paths under `root`. */
export function issuesOf(error: z.ZodError, root = ''): ConfigIssue[] {
  return error.issues.map((i) => ({
    path: [root, ...i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))].join('').replace(/^\./, ''),
    message: i.message,
  }));
}

/** zod's issues one per line, `  - path: message`. */
export function formatIssues(error: z.ZodError, root = ''): string {
  return issuesOf(error, root)
    .map((i) => `  - ${i.path || '(root)'}: ${i.message}`)
    .join('\n');
}

/** Parses with a zod schema, or throws a ConfigError naming every field at fault (paths under `root`). */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, subject: string, root = ''): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ConfigError(subject, issuesOf(r.error, root));
  return r.data;
}
