// Standalone PersistentVolumeClaims on the loopback node (volumes.ts claimVolume, ApiObjects.claim), against kind's
// default class: rancher/local-path-provisioner (provisioner.go, deploy/local-path-storage.yaml).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ApiObjects } from "./apiobjects";
import { NODE_KINDS } from "./live";
import { claimVolume } from "./volumes";

const claim = (spec: Record<string, unknown>) => ({
    kind: "PersistentVolumeClaim",
    metadata: { name: "backup-repository", namespace: "mail" },
    spec: { resources: { requests: { storage: "1Gi" } }, ...spec },
});

let dir: string;
beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "e2e-claims-"))));
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("standalone claims on the node", () => {
    test("a ReadWriteOnce claim is provisioned on its first consumer as a 0777 node directory, and kept for the next pod", () => {
        const volume = path.join(dir, "backup-repository");
        claimVolume(volume, "backup-repository", "mail-backup-e2e", claim({ accessModes: ["ReadWriteOnce"] }));
        expect(fs.statSync(volume).mode & 0o7777).toBe(0o777);
        fs.writeFileSync(path.join(volume, "config"), "restic");
        claimVolume(volume, "backup-repository", "mail-restore-e2e", claim({ accessModes: ["ReadWriteOnce"] }));
        expect(fs.readFileSync(path.join(volume, "config"), "utf8")).toBe("restic");
    });

    test("a claim the API does not have fails the pod as the kubelet does", () => {
        expect(() => claimVolume(path.join(dir, "nope"), "nope", "mail-backup-e2e")).toThrow('pod mail-backup-e2e: persistentvolumeclaim "nope" not found');
    });

    test("access modes and volume modes local-path cannot provision leave the claim Pending", () => {
        expect(() => claimVolume(path.join(dir, "rwx"), "rwx", "p", claim({ accessModes: ["ReadWriteMany"] }))).toThrow(
            'persistentvolumeclaim "rwx" is Pending: failed to provision volume with StorageClass "standard": NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes',
        );
        expect(() => claimVolume(path.join(dir, "blk"), "blk", "p", claim({ accessModes: ["ReadWriteOnce"], volumeMode: "Block" }))).toThrow(
            "rancher.io/local-path does not support block volume provisioning",
        );
        expect(fs.existsSync(path.join(dir, "rwx"))).toBe(false);
    });

    test("the API finds a claim by namespace and name, not a same-named claim elsewhere", () => {
        const api = new ApiObjects([claim({ accessModes: ["ReadWriteOnce"] })]);
        expect(api.claim("mail", "backup-repository")?.spec.accessModes).toEqual(["ReadWriteOnce"]);
        expect(api.claim("other", "backup-repository")).toBeUndefined();
    });

    test("the deploy hands claims to the node, whose kubelet looks them up when a pod mounts one", () => {
        expect(NODE_KINDS.has("PersistentVolumeClaim")).toBe(true);
    });
});
