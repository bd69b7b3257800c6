import type { FastifyPluginAsync } from "fastify";
import type { Redis } from "ioredis";
import { RedisUnavailableError } from "../../errors/catalog.js";
import { ModelCatalog } from "../../models/catalog.js";
import { ReloadBus, reloadCatalog } from "../../models/reload.js";
import { createRedis, isConnectionError, waitReady } from "../../redis/connection.js";
import { objectResponse } from "../openapi.js";
import type { HttpDeps } from "../types.js";

/**
 * Admin routes of the model repository. `POST /api/admin/models/reload` rescans
 * MODEL_REPOSITORY; workers load and warm the new versions; a version that fails to load in
 * any worker is not served, its predecessor stays latest, and the response says why.
 * Needs an admin key (the auth hook checks the route's `access`).
 */
export const adminModelRoutes: FastifyPluginAsync<HttpDeps> = async (
  app,
  { config, catalog, versions, reloads },
) => {
  const connect = (role: "command" | "blocking") => {
    // Commands wait for the connection to come up, then fail fast once it is lost.
    const c = createRedis(config.redisUrl, role, role === "command" ? { enableOfflineQueue: true } : {});
    c.on("error", () => {});
    return c;
  };
  let publisher: Redis | undefined;
  let bus: ReloadBus | undefined;
  app.addHook("onClose", async () => publisher?.disconnect());

  const schema = {
    response: {
      200: objectResponse(
        "What each worker loaded: `reloaded`, or `partial` with what failed or did not answer",
        {
          status: { type: "string", enum: ["reloaded", "partial"] },
        },
      ),
    },
  };
  app.post("/api/admin/models/reload", { config: { access: "admin" }, schema }, async (req) => {
    publisher ??= connect("command");
    bus ??= new ReloadBus(publisher, () => connect("blocking"), config.REDIS_KEY_PREFIX);
    try {
      await waitReady(publisher, config.REDIS_COMMAND_TIMEOUT_MS * 2).catch((err: unknown) => {
        throw new RedisUnavailableError(err);
      });
      const outcome = await reloadCatalog(
        catalog,
        () => ModelCatalog.load(config.MODEL_REPOSITORY, config.MODELS),
        bus,
        config.MODEL_RELOAD_TIMEOUT_MS,
      );
      // The workers that answered published what they now serve: route by it from now on.
      await versions.refresh();
      // The other API processes rescan too and leave out what failed here. Should Redis not take
      // the announcement, they serve what they served until they restart or run a reload.
      await reloads
        .announce(outcome.failed)
        .catch((err: unknown) =>
          req.log.warn(
            { event: "reload_not_announced", err: (err as Error).message },
            "other API processes were not told of this reload",
          ),
        );
      // "reloaded" only when every worker reached has said it loaded everything.
      const complete = outcome.failed.length === 0 && outcome.unanswered === 0;
      return { status: complete ? "reloaded" : "partial", ...outcome };
    } catch (err) {
      if (isConnectionError(err)) throw new RedisUnavailableError(err);
      throw err;
    }
  });
};
