import type { Config } from "../config/index.js";
import type { Logger } from "../telemetry/logger.js";
import { ensureRedis } from "./local-redis.js";
import { Supervisor } from "./supervisor.js";

export interface StartOptions {
  readonly entry: string;
  readonly env: NodeJS.ProcessEnv;
  readonly workers: number;
  /** Where the banner goes (stderr: stdout carries JSON logs). */
  readonly print: (line: string) => void;
}

export interface StartHandle {
  readonly url: Promise<string>;
  stop(): Promise<void>;
}

/** `inferline start`: Redis (found or started), one API process and N worker processes. */
export async function runStart(config: Config, logger: Logger, opts: StartOptions): Promise<StartHandle> {
  const redis = await ensureRedis(config, logger, opts.env.PATH);
  let announce: (url: string) => void = () => {};
  const url = new Promise<string>((r) => (announce = r));
  const supervisor = new Supervisor({
    entry: opts.entry,
    env: { ...opts.env, REDIS_URL: redis.url },
    restartBackoffMs: config.SUPERVISOR_RESTART_BACKOFF_MS,
    stopTimeoutMs: config.WORKER_SHUTDOWN_TIMEOUT_MS + 5000,
    logger,
    onMessage: (_name, m) => {
      const msg = m as { type?: string; url?: string };
      if (msg.type === "listening" && msg.url) announce(msg.url);
    },
  });
  supervisor.add({ name: "api", args: ["api"] });
  for (let i = 1; i <= opts.workers; i++) supervisor.add({ name: `worker-${i}`, args: ["worker"] });

  void url.then((u) => {
    opts.print(
      [
        "",
        `  Inferline is up: ${u}`,
        `    predict   curl -s -XPOST ${u}/api/ml/sentiment -H 'content-type: application/json' -H 'Prefer: wait=5' -d '{"text":"I love it"}'`,
        `    models    ${u}/api/models`,
        `    health    ${u}/health`,
        `    redis     ${redis.owned ? `started here on 127.0.0.1:${config.LOCAL_REDIS_PORT} (stopped on exit)` : "external"}`,
        `    workers   ${opts.workers} process(es)`,
        "  Ctrl-C stops everything gracefully.",
        "",
      ].join("\n"),
    );
  });

  let stopping: Promise<void> | undefined;
  return {
    url,
    stop: () =>
      (stopping ??= (async () => {
        await supervisor.stop();
        await redis.stop();
      })()),
  };
}
