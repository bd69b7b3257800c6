import { isUtf8 } from "node:buffer";
import type { FastifyInstance } from "fastify";
import { JsonTooDeepError, MalformedJsonError, UnsupportedMediaTypeError } from "../../errors/catalog.js";
import { jsonTooDeep } from "../../security/index.js";

/** A charset other than UTF-8 (RFC 8259: JSON between systems is UTF-8). */
const OTHER_CHARSET = /;\s*charset\s*=\s*(?!"?utf-?8"?\s*(?:;|$))/i;

/**
 * The JSON body parser: Fastify's own (prototype-poisoning checks included), after a depth
 * check on the raw text, so hostile nesting is refused before it is parsed. A body declared in
 * another charset, or compressed (Content-Encoding), is refused (415) rather than read with its
 * bytes replaced or reported as malformed; one that claims UTF-8 but is not (Latin-1 text, say)
 * is malformed (400): decoded, its bad bytes would become U+FFFD, and two different inputs one.
 */
export function installJsonBody(app: FastifyInstance, maxDepth: number): void {
  const parse = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (req, raw, done) => {
    if (OTHER_CHARSET.test(req.headers["content-type"] ?? "")) {
      done(
        new UnsupportedMediaTypeError("request body must be JSON in UTF-8 (charset=utf-8 or none)"),
        undefined,
      );
      return;
    }
    const coding = req.headers["content-encoding"];
    if (coding !== undefined && !/^\s*identity\s*$/i.test(coding)) {
      // Read as it is, a compressed body would be reported as malformed JSON.
      const err = new UnsupportedMediaTypeError(
        `headers.content-encoding "${coding.slice(0, 40)}" is not supported; send the JSON body uncompressed`,
        { field: "headers.content-encoding" },
      );
      err.headers["accept-encoding"] = "identity";
      done(err, undefined);
      return;
    }
    if (!isUtf8(raw as Buffer)) {
      done(
        new MalformedJsonError("request body is not valid UTF-8, as JSON sent between systems must be"),
        undefined,
      );
      return;
    }
    const body = (raw as Buffer).toString("utf8");
    if (jsonTooDeep(body, maxDepth)) {
      done(new JsonTooDeepError(maxDepth), undefined);
      return;
    }
    void parse(req, body, (err, value) => {
      if (err && body.length > 0) done(whyNotJson(body), undefined);
      else done(err, value);
    });
  });
}

/**
 * What is wrong with a body the parser refused, for the client to find it: where the syntax
 * breaks, or, for valid JSON, the prototype-poisoning key it carries (Fastify's own error says
 * neither). Only failed requests pay for this second parse.
 */
function whyNotJson(body: string): MalformedJsonError {
  try {
    JSON.parse(body);
  } catch (err) {
    return new MalformedJsonError(`request body is not valid JSON: ${(err as Error).message}`);
  }
  return new MalformedJsonError(
    'request body must not have a "__proto__" key, nor a "constructor" key holding "prototype"',
  );
}
