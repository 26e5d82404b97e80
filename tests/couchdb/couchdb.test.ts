import * as path from "path";
import { kubernetesObjects, unwrapSecrets } from "../kit/k8s-schema";
import { ProgramRun, runProgram } from "../kit/program";

type Obj = { kind: string; metadata: { name: string }; spec?: any; data?: Record<string, string> }; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Sections → keys → values of an ini file, as CouchDB's config reader splits it. */
function parseIni(text: string): Record<string, Record<string, string>> {
    const out: Record<string, Record<string, string>> = {};
    let section = "";
    for (const raw of text.split("\n")) {
        const line = raw.replace(/;.*$/, "").trim();
        const head = /^\[([^\]]+)\]$/.exec(line);
        if (head) section = head[1];
        else if (line.includes("=")) (out[section] ??= {})[line.slice(0, line.indexOf("=")).trim()] = line.slice(line.indexOf("=") + 1).trim();
    }
    return out;
}

/**
 * What CouchDB answers an anonymous request (no credentials, as a kubelet httpGet probe sends) — chttpd's
 * `require_valid_user` refuses every anonymous request with 401, `/_up` included, unless
 * `require_valid_user_except_for_up` is also true (CouchDB docs, "Configuration › chttpd"; measured on 3.4.3).
 */
function anonymousStatus(chttpd: Record<string, string>, urlPath: string): number {
    if (chttpd.require_valid_user !== "true") return 200;
    return urlPath === "/_up" && chttpd.require_valid_user_except_for_up === "true" ? 200 : 401;
}

/**
 * The ini chain CouchDB loads: default.ini, default.d/*.ini, local.ini, then local.d/*.ini in name order; runtime
 * changes go to the last file (CouchDB docs, "Configuration › Introduction"). The official image writes local.d/docker.ini.
 */
function lastLoadedLocalIni(mounted: string[]): string {
    return [...mounted, "docker.ini"].sort()[mounted.length];
}

describe("CouchDB as the program deploys it", () => {
    let run: ProgramRun;
    let objects: Obj[];
    beforeAll(async () => {
        run = await runProgram({ clusterProvider: "digitalocean", mailHostname: "mail.example.com", mailDomains: ["example.com"] });
        objects = kubernetesObjects(run.recorder.resources).map((r) => unwrapSecrets(r.inputs) as Obj);
    });
    const statefulSet = () => objects.find((o) => o.kind === "StatefulSet" && o.metadata.name === "couchdb")!;
    const container = () => statefulSet().spec.template.spec.containers[0];
    const iniMount = () => container().volumeMounts.find((m: { name: string }) => m.name === "config");
    const renderedIni = () => {
        const data = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === "couchdb-config")!.data!;
        return parseIni(data[iniMount().subPath]);
    };

    it("passes its own readiness and liveness probes: anonymous /_up is allowed while everything else needs a password", () => {
        const chttpd = renderedIni().chttpd;
        for (const probe of [container().readinessProbe, container().livenessProbe]) {
            expect(probe.httpGet.httpHeaders).toBeUndefined();
            expect({ path: probe.httpGet.path, status: anonymousStatus(chttpd, probe.httpGet.path) }).toEqual({ path: probe.httpGet.path, status: 200 });
        }
        expect(anonymousStatus(chttpd, "/_all_dbs")).toBe(401);
        expect(anonymousStatus(chttpd, "/mail/_all_docs")).toBe(401);
    });

    it("leaves the image's writable docker.ini last in the chain, so the admin hash and uuid persist", () => {
        const mountPath: string = iniMount().mountPath;
        expect(path.posix.dirname(mountPath)).toBe("/opt/couchdb/etc/local.d");
        expect(iniMount().readOnly).toBe(true);
        expect(lastLoadedLocalIni([path.posix.basename(mountPath)])).toBe("docker.ini");
    });

    it("runs single-node with n=1 and walks its volume only when the volume's owner is wrong", () => {
        expect(renderedIni().couchdb.single_node).toBe("true");
        expect(renderedIni().cluster.n).toBe("1");
        expect(statefulSet().spec.template.spec.securityContext.fsGroupChangePolicy).toBe("OnRootMismatch");
    });
});
