import type { Config } from "../config/index.js";
import type { ModelCatalog } from "../models/catalog.js";
import type { InputValidator } from "../models/validation.js";
import type { JobService } from "../queue/jobs.js";
import type { FastifyBaseLogger } from "fastify";

export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

/** What the HTTP layer is given; it reaches Redis only through these. */
export interface HttpDeps {
  readonly config: Config;
  readonly logger: FastifyBaseLogger;
  readonly catalog: ModelCatalog;
  readonly validator: InputValidator;
  readonly jobs: JobService;
  readonly health: {
    readiness(): Promise<Readiness>;
    detailed(): Promise<Record<string, unknown>>;
  };
}
