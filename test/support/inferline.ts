import { after, before } from "node:test";
import { startApi, type ApiHandle } from "../../src/api/main.js";
import { testConfig, testEnv } from "./config.js";
import { spawnWorker, stop, type Spawned } from "./processes.js";
import { cleanupPrefix, uniquePrefix } from "./redis.js";

export interface InferlineOptions {
  /** Overrides for testConfig/testEnv, the same for the API and the worker. */
  readonly env?: Record<string, string>;
  /** true: one worker; a list: one worker started with these CLI arguments; absent or false: none. */
  readonly worker?: boolean | readonly string[];
}

/** What useInferline started; read it inside tests and hooks, once `before` has run. */
export interface Inferline {
  readonly prefix: string;
  readonly api: ApiHandle;
  /** api.url */
  readonly url: string;
  readonly worker: Spawned;
}

/**
 * The fixture most suites share: an API in this process and, if asked, one worker process, on a
 * key prefix of the suite's own. Registers `before` and `after` in the calling describe. `after`
 * stops the worker, closes the API and deletes the prefix's keys, and copes with a `before` that
 * failed half way (it tears down whatever did start), so a broken start does not leave keys or
 * processes behind. node:test runs hooks in the order they were registered: a suite's own `after`
 * registered before this call runs before the API closes, one registered after it runs last.
 */
export function useInferline(label: string, opts: InferlineOptions = {}): Inferline {
  const prefix = uniquePrefix(label);
  const env = opts.env ?? {};
  const workerArgs = opts.worker === true ? [] : opts.worker === false ? undefined : opts.worker;
  let api: ApiHandle | undefined;
  let worker: Spawned | undefined;

  before(async () => {
    api = await startApi(testConfig(prefix, env));
    if (workerArgs) worker = await spawnWorker(testEnv(prefix, env), workerArgs);
  });
  after(async () => {
    try {
      if (worker) await stop(worker);
    } finally {
      try {
        await api?.close();
      } finally {
        await cleanupPrefix(prefix);
      }
    }
  });

  const started = (): ApiHandle => {
    if (!api)
      throw new Error(`useInferline("${label}"): the API is not running (read it inside a test or hook)`);
    return api;
  };
  return {
    prefix,
    get api() {
      return started();
    },
    get url() {
      return started().url;
    },
    get worker() {
      if (!workerArgs)
        throw new Error(`useInferline("${label}") was asked for no worker: pass { worker: true } to get one`);
      if (!worker)
        throw new Error(
          `useInferline("${label}"): the worker is not running (read it inside a test or hook)`,
        );
      return worker;
    },
  };
}
