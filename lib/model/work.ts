// One body for the synchronous calls and their Async twins. A long
// computation (an optimizer step, a Lanczos run) is written once as a
// generator that yields each heavy native call as a Job; runSync performs
// the jobs at once, runAsync awaits each on libuv's thread pool, so the event
// loop runs between them. Everything between the jobs (flat-vector ops, a few
// microseconds each) runs on the JavaScript thread either way, in the same
// order: the two give the same numbers bit for bit.

/** A heavy native call, runnable now or on the thread pool. */
export interface Job<R = number> {
  sync(): R;
  async(): Promise<R>;
}

// R: what a job returns (a loss, a tensor); `any` lets one piece of work yield jobs of several kinds
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Work<T, R = any> = Generator<Job<R>, T, R>;

/** Performs the work's jobs at once, on this thread. */
export function runSync<T>(work: Work<T, any>): T {
  let step = work.next();
  while (!step.done) {
    let value: unknown;
    try {
      value = step.value.sync();
    } catch (e) {
      step = work.throw(e); // the work's finally blocks run (e.g. restoring w)
      continue;
    }
    step = work.next(value);
  }
  return step.value;
}

/** Performs the work's jobs on libuv's thread pool, one after the other. */
export async function runAsync<T>(work: Work<T, any>): Promise<T> {
  let step = work.next();
  while (!step.done) {
    let value: unknown;
    try {
      value = await step.value.async();
    } catch (e) {
      step = work.throw(e);
      continue;
    }
    step = work.next(value);
  }
  return step.value;
}

/** One job as work: `const r = yield* one(job)`. */
export function* one<R>(job: Job<R>): Work<R, R> {
  return (yield job) as R;
}
