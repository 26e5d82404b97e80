// Every Secret a pod mounts, with the owner and mode the kubelet gives its files, is readable only by the processes
// that need it — including the unprivileged workers that Postfix, Dovecot and OpenDKIM start inside their containers.
import * as fs from "fs";
import * as path from "path";
import { kubernetesObjects, unwrapSecrets } from "../kit/k8s-schema";
import { imageUsers } from "../kit/images";
import { runProgram } from "../kit/program";

/* eslint-disable @typescript-eslint/no-explicit-any -- pod specs as declared */
type Identity = { name: string; uid: number; gids: number[] };

/**
 * A Secret volume's files as the kubelet leaves them: written with the item's mode or defaultMode (0644 when unset),
 * owned by root; with a pod fsGroup, group-owned by it and OR-ed with 0440 because Secret volumes are read-only
 * (kubernetes pkg/volume/volume_linux.go SetVolumeOwnership: roMask = 0440; pkg/volume/secret/secret.go).
 */
export function secretFileMode(volume: any, key: string, fsGroup?: number): { uid: number; gid: number; mode: number } {
    const item = volume.secret.items?.find((i: { key: string }) => i.key === key);
    const mode = item?.mode ?? volume.secret.defaultMode ?? 0o644;
    return fsGroup === undefined ? { uid: 0, gid: 0, mode } : { uid: 0, gid: fsGroup, mode: mode | 0o440 };
}

function canRead(who: Identity, file: { uid: number; gid: number; mode: number }): boolean {
    if (who.uid === 0 || who.uid === file.uid) return who.uid === 0 || (file.mode & 0o400) !== 0;
    if (who.gids.includes(file.gid)) return (file.mode & 0o040) !== 0;
    return (file.mode & 0o004) !== 0;
}

/** Who may read each mounted Secret: the daemons read their keys as root; couchmail reads its CouchDB password. */
const ALLOWED_READERS: Record<string, string[]> = {
    "postfix/postfix/tls": ["root"],
    "postfix/postfix/relay": ["root"],
    "dovecot/dovecot/tls": ["root"],
    "opendkim/opendkim/keys": ["root"],
    "postfix/couchmail/couchdb-credentials": ["container-user"],
    "dovecot/couchmail/couchdb-credentials": ["container-user"],
    // The sync Job's name carries a hash of what it syncs: it runs again when that changes.
    "couchmail-sync/sync/couchdb-credentials": ["container-user"],
};

describe("Secrets mounted into pods", () => {
    it("are readable only by the processes that need them", async () => {
        const run = await runProgram({
            clusterProvider: "digitalocean",
            mailHostname: "mail.example.com",
            mailDomains: ["example.com"],
            relayHost: "smtp.relay.example",
            relayUsername: "u",
            relayPassword: "p",
        });
        const workloads = kubernetesObjects(run.recorder.resources)
            .map((r) => unwrapSecrets(r.inputs) as any)
            .filter((o) => o.spec?.template?.spec);
        const seen: string[] = [];
        const violations: string[] = [];
        for (const w of workloads) {
            const pod = w.spec.template.spec;
            const fsGroup: number | undefined = pod.securityContext?.fsGroup;
            const supplemental: number[] = [...(fsGroup === undefined ? [] : [fsGroup]), ...(pod.securityContext?.supplementalGroups ?? [])];
            for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
                const uid = c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser ?? 0;
                const gid = c.securityContext?.runAsGroup ?? pod.securityContext?.runAsGroup ?? 0;
                // The container's own process keeps the kubelet's supplementary groups; daemons' workers drop them.
                const identities: Identity[] = [
                    { name: uid === 0 ? "root" : "container-user", uid, gids: [gid, ...supplemental] },
                    ...(uid === 0 && fs.existsSync(path.join(__dirname, "../../images", c.name, "Dockerfile"))
                        ? imageUsers(c.name).map((u) => ({ name: u.name, uid: u.uid, gids: [u.gid] }))
                        : []),
                ];
                for (const m of c.volumeMounts ?? []) {
                    const volume = pod.volumes.find((v: { name: string }) => v.name === m.name);
                    if (!volume?.secret) continue;
                    const where = `${String(w.metadata.name).replace(/^(couchmail-sync)-[0-9a-f]+$/, "$1")}/${c.name}/${m.name}`;
                    seen.push(where);
                    const keys: string[] = volume.secret.items?.map((i: { key: string }) => i.key) ?? ["any"];
                    for (const key of keys) {
                        const file = secretFileMode(volume, key, fsGroup);
                        const readers = identities.filter((who) => canRead(who, file)).map((who) => who.name);
                        const extra = readers.filter((r) => !(ALLOWED_READERS[where] ?? []).includes(r));
                        if (extra.length)
                            violations.push(`${where} (${key}: mode ${file.mode.toString(8)} gid ${file.gid}) is readable by ${extra.join(", ")}`);
                    }
                }
            }
        }
        expect(violations).toEqual([]);
        expect(seen.sort()).toEqual(Object.keys(ALLOWED_READERS).sort());
    });
});
