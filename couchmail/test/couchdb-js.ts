/**
 * How CouchDB's JavaScript query server turns design-document source into a function and
 * what a validate_doc_update's outcome becomes over HTTP — modelled on CouchDB 3.4 with its
 * QuickJS engine (the stricter of its two engines):
 * - apache/couchdb src/couch_quickjs/c_src/couchjs.c `js_evalcx`: the source is evaluated as a
 *   global *script* (JS_EVAL_TYPE_GLOBAL) and its completion value must be a function;
 * - src/couch_quickjs/patches/01-spidermonkey-185-mode.patch: only a top-level `function` (or
 *   `async function`) followed by `(` is parsed as an expression; `function name(…) {…}` stays a
 *   declaration, whose completion value is undefined;
 * - share/server/util.js `Couch.compileFunction`: anything but a function ⇒
 *   ["error", "compilation_error", "Expression does not eval to a function. (<source>)"], a
 *   parse error ⇒ "compilation_error" with the error's stack and the source;
 * - share/server/validate.js + src/couch/src/couch_query_servers.erl `validate_doc_update`:
 *   `throw({forbidden: m})` ⇒ 403 forbidden, `throw({unauthorized: m})` ⇒ 401 unauthorized, an
 *   Error ⇒ 500 named after it, any other thrown value ⇒ 500 unknown_error.
 */
import vm from "node:vm";

export interface CouchHttpError {
  status: number;
  error: string;
  reason: string;
}

export type Compiled = { ok: true; call: (args: unknown[]) => void } | { ok: false; failure: CouchHttpError };

// The globals create_sandbox() (share/server/dispatch-quickjs.js) gives a design function.
const SANDBOX_PRELUDE = `
  var log = function () {};
  var isArray = Array.isArray;
  var toJSON = JSON.stringify;
  var sum = function (a) { var s = 0; for (var i = 0; i < a.length; i++) s += a[i]; return s; };
  var __apply = function (f, json) { return f.apply(null, JSON.parse(json)); };
`;

/** Index of the first token: skips whitespace and comments. */
function skipTrivia(s: string, i: number): number {
  for (;;) {
    while (i < s.length && /\s/.test(s[i])) i++;
    if (s.startsWith("//", i)) {
      const nl = s.indexOf("\n", i);
      i = nl < 0 ? s.length : nl + 1;
    } else if (s.startsWith("/*", i)) {
      const end = s.indexOf("*/", i + 2);
      i = end < 0 ? s.length : end + 2;
    } else return i;
  }
}

/** True when QuickJS's SpiderMonkey-1.8.5 mode reads the source's first statement as a function expression. */
export function startsWithAnonymousFunction(source: string): boolean {
  let i = skipTrivia(source, 0);
  if (/^async\b/.test(source.slice(i))) i = skipTrivia(source, i + 5);
  if (!/^function\b/.test(source.slice(i))) return false;
  i = skipTrivia(source, i + 8);
  return source[i] === "(";
}

const compilationError = (reason: string): CouchHttpError => ({ status: 500, error: "compilation_error", reason });

/** Compiles design-document source the way CouchDB's QuickJS query server does. */
export function compileDesignFunction(source: unknown): Compiled {
  if (typeof source !== "string" || source === "") return { ok: false, failure: { status: 404, error: "not_found", reason: "missing function" } };
  const context = vm.createContext({});
  vm.runInContext(SANDBOX_PRELUDE, context);
  let value: unknown;
  try {
    // Node parses a statement-level `function (` as a syntax error; QuickJS's patch parses it as
    // an expression statement, which is what parentheses give here. Trailing semicolons are part
    // of that statement.
    const script = startsWithAnonymousFunction(source) ? `(${source.replace(/[\s;]+$/, "")}\n)` : source;
    value = vm.runInContext(script, context, { filename: "validate_doc_update", timeout: 5000 });
  } catch (e) {
    return { ok: false, failure: compilationError(`${(e as Error)?.stack ?? String(e)} (${source})`) };
  }
  if (typeof value !== "function") return { ok: false, failure: compilationError(`Expression does not eval to a function. (${source})`) };
  const apply = vm.runInContext("__apply", context) as (f: unknown, json: string) => unknown;
  // Arguments cross as JSON, as they do on the query server's stdin: the function sees its own realm's objects.
  return { ok: true, call: (args) => void apply(value, JSON.stringify(args)) };
}

/** Runs a compiled validate_doc_update; returns the HTTP error it means, or null when the document passes. */
export function runValidation(compiled: Compiled, newDoc: unknown, oldDoc: unknown, userCtx: unknown, secObj: unknown): CouchHttpError | null {
  if (!compiled.ok) return compiled.failure;
  try {
    compiled.call([newDoc, oldDoc ?? null, userCtx, secObj]);
    return null;
  } catch (e) {
    const thrown = e as Record<string, unknown> | null;
    // validate.js rethrows anything with a name and a stack (an Error) before looking for forbidden/unauthorized.
    if (thrown && typeof thrown === "object" && typeof thrown.name === "string" && typeof thrown.stack === "string") {
      return { status: 500, error: thrown.name, reason: String(thrown.message) };
    }
    if (thrown && typeof thrown === "object" && "forbidden" in thrown) return { status: 403, error: "forbidden", reason: String(thrown.forbidden) };
    if (thrown && typeof thrown === "object" && "unauthorized" in thrown) return { status: 401, error: "unauthorized", reason: String(thrown.unauthorized) };
    return { status: 500, error: "unknown_error", reason: typeof e === "string" ? e : (JSON.stringify(e) ?? String(e)) };
  }
}
