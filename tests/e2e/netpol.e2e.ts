// NetworkPolicies as enforced in the pods' network namespaces: the paths the mail system needs are open, the
// internal listeners (which take no credentials or trust PROXY headers) refuse every other pod — one in the mail
// namespace (`attacker`) and one in another namespace (`outsider`) — and the public ports stay reachable.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { OUTSIDE } from "./layout";
import { cluster, connectFrom, stack } from "./suite";

/* eslint-disable @typescript-eslint/no-explicit-any -- Service specs as the program declared them */
type Spec = any;

/** Every port of the program's Services in the mail namespace: name, pod IP and target port. */
function servicePorts(): { service: string; name: string; host: string; port: number }[] {
    const c = cluster();
    return c
        .services()
        .filter((s) => s.namespace === "mail")
        .flatMap((s) =>
            s.ports.map((p: Spec) => ({
                service: s.name,
                name: p.name ?? String(p.port),
                host: c.podIp(p.workload.name),
                port: p.target,
            })),
        );
}

/** Listeners only other pods of the mail system may use, and the PROXY-protocol-only ports (only the edge may). */
const INTERNAL = /^(couchdb|opendkim|spamassassin|postgrey)$|^dovecot$/;
const internalPorts = () => servicePorts().filter((p) => (INTERNAL.test(p.service) && !/^(imap|imaps|sieve)$/.test(p.name)) || /proxy/i.test(p.name));

describe("NetworkPolicies", () => {
    test("the mail system's own paths are open (Postfix → CouchDB, Dovecot LMTP/SASL, OpenDKIM, postgrey; Dovecot → CouchDB, spamd)", () => {
        const need: [string, string, string, number][] = [];
        const c = cluster();
        const ip = (w: string) => c.podIp(w);
        const ports = servicePorts();
        const port = (svc: string, name: string) => ports.find((p) => p.service === svc && p.name === name)!.port;
        need.push(
            ["postfix", "postfix", ip("couchdb"), port("couchdb", "http")],
            ["postfix", "couchmail", ip("couchdb"), port("couchdb", "http")],
            ["postfix", "postfix", ip("dovecot"), port("dovecot", "lmtp")],
            ["postfix", "postfix", ip("dovecot"), port("dovecot", "auth")],
            ["postfix", "postfix", ip("opendkim"), port("opendkim", "milter")],
            ["postfix", "postfix", ip("postgrey"), port("postgrey", "policy")],
            ["dovecot", "couchmail", ip("couchdb"), port("couchdb", "http")],
            ["dovecot", "dovecot", ip("spamassassin"), port("spamassassin", "spamd")],
        );
        const closed = need.map(([pod, ctr, host, p]) => `${pod}/${ctr} → ${host}:${p}: ${connectFrom(pod, ctr, host, p)}`).filter((x) => !x.endsWith("open"));
        assert.deepEqual(closed, []);
    });

    test("another pod — in the mail namespace or elsewhere — cannot reach CouchDB, LMTP, SASL, the milter, spamd, postgrey or PROXY ports", () => {
        const targets = internalPorts();
        assert.ok(targets.some((t) => t.service === "couchdb") && targets.some((t) => t.name === "lmtp") && targets.some((t) => t.service === "opendkim"));
        const open: string[] = [];
        for (const pod of ["attacker", "outsider"]) {
            for (const t of targets) {
                const r = connectFrom(pod, "probe", t.host, t.port);
                if (r !== "dropped") open.push(`${pod} → ${t.service}/${t.name} (${t.host}:${t.port}): ${r}`);
            }
        }
        assert.deepEqual(open, []);
    });

    test("egress: only Postfix opens connections to the internet; pods reach CouchDB only when they use it", () => {
        const c = cluster();
        const internetMx = { host: OUTSIDE.ip, port: 25 };
        const couch = { host: c.podIp("couchdb"), port: servicePorts().find((p) => p.service === "couchdb")!.port };
        const open: string[] = [];
        for (const [pod, ctr] of [
            ["opendkim", "opendkim"],
            ["postgrey", "postgrey"],
            ["spamassassin", "spamd"],
            ["dovecot", "dovecot"],
        ]) {
            const out = connectFrom(pod, ctr, internetMx.host, internetMx.port);
            if (out !== "dropped") open.push(`${pod}/${ctr} → the internet (${internetMx.host}:${internetMx.port}): ${out}`);
        }
        for (const [pod, ctr] of [
            ["opendkim", "opendkim"],
            ["postgrey", "postgrey"],
            ["spamassassin", "spamd"],
        ]) {
            const out = connectFrom(pod, ctr, couch.host, couch.port);
            if (out !== "dropped") open.push(`${pod}/${ctr} → CouchDB (${couch.host}:${couch.port}): ${out}`);
        }
        assert.deepEqual(open, []);
        assert.equal(connectFrom("postfix", "postfix", internetMx.host, internetMx.port), "open");
    });

    test("the public ports stay reachable from a pod of another namespace", () => {
        const smtp = stack.endpoints.smtp;
        assert.equal(connectFrom("outsider", "probe", smtp.host, smtp.port), "open");
        assert.equal(connectFrom("outsider", "probe", stack.endpoints.imap.host, stack.endpoints.imap.port), "open");
    });
});
