import type { FastifyInstance } from "fastify";
import { JsonTooDeepError } from "../../errors/catalog.js";
import { jsonTooDeep } from "../../security/index.js";

/**
 * The JSON body parser: Fastify's own (prototype-poisoning checks included), after a depth
 * check on the raw text, so hostile nesting is refused before it is parsed.
 */
export function installJsonBody(app: FastifyInstance, maxDepth: number): void {
  const parse = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (req, body, done) => {
    if (jsonTooDeep(body as string, maxDepth)) {
      done(new JsonTooDeepError(maxDepth), undefined);
      return;
    }
    void parse(req, body as string, done);
  });
}
