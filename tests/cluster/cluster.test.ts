import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { schemaErrors, unwrapSecrets } from "../kit/k8s-schema";
import { runProgram } from "../kit/program";
import { FAKE_DIGITALOCEAN_TOKEN, FAKE_DOKS_SEVEN_DAY_TOKEN, FAKE_GKE_CHANNELS } from "../kit/mocks";
import { digitaloceanApiToken } from "../../components/cluster/digitalocean";
import { channelVersion } from "../../components/cluster/gke";
import { requireVersion, versionFilter } from "../../components/cluster/types";

const mail = { mailHostname: "mail.example.com", mailDomains: ["example.com"] };

describe("DigitalOcean target", () => {
    it("creates a DOKS cluster in its own VPC at the newest matching version, with auto-upgrade and a maintenance window", async () => {
        const run = await runProgram({ ...mail, clusterProvider: "digitalocean", clusterRegion: "ams3", clusterVersionPrefix: "1.33" });
        const { recorder } = run;
        const vpc = recorder.one("digitalocean:index/vpc:Vpc");
        const cluster = recorder.one("digitalocean:index/kubernetesCluster:KubernetesCluster");
        expect(vpc.inputs.region).toBe("ams3");
        expect(cluster.inputs).toMatchObject({
            region: "ams3",
            version: "1.33.5-do.1",
            vpcUuid: `${vpc.name}-id`,
            autoUpgrade: true,
            maintenancePolicy: { day: "sunday", startTime: "04:00" },
            nodePool: { size: "s-2vcpu-4gb", nodeCount: 1 },
        });
        const component = recorder.one("mail:index:DigitalOceanCluster");
        expect(cluster.parent).toBe(recorder.urnOf(component));
        expect(recorder.one("pulumi:providers:kubernetes").parent).toBe(recorder.urnOf(component));
        const kubeconfig = await run.resolve(run.outputs.kubeconfig as string);
        expect(kubeconfig.secret).toBe(true);
        expect(JSON.parse(kubeconfig.value).kind).toBe("Config");
    });

    it("gives the Kubernetes provider the run's own API token, never the cluster's 7-day token frozen in state", async () => {
        const run = await runProgram({ ...mail, clusterProvider: "digitalocean" });
        const provider = run.recorder.one("pulumi:providers:kubernetes");
        const providerConfig = parseYaml(unwrapSecrets(provider.inputs.kubeconfig) as string);
        expect(JSON.stringify(providerConfig)).not.toContain(FAKE_DOKS_SEVEN_DAY_TOKEN);
        expect(providerConfig.users[0].user).toEqual({ token: FAKE_DIGITALOCEAN_TOKEN });
        expect(providerConfig.clusters[0].cluster).toEqual({
            server: "https://mail-cluster.k8s.example",
            "certificate-authority-data": Buffer.from("mock-doks-ca").toString("base64"),
        });
        // The exported kubeconfig holds no token at all: doctl fetches one on each use.
        const exported = JSON.parse((await run.resolve(run.outputs.kubeconfig as string)).value);
        expect(JSON.stringify(exported)).not.toContain(FAKE_DOKS_SEVEN_DAY_TOKEN);
        expect(exported.users[0].user.exec).toMatchObject({
            command: "doctl",
            args: ["kubernetes", "cluster", "kubeconfig", "exec-credential", "--version=v1beta1", "mail-cluster-id"],
        });
    });

    it("names what to set when no DigitalOcean API token is given", () => {
        expect(() => digitaloceanApiToken(undefined, {})).toThrow(
            "clusterProvider digitalocean needs a DigitalOcean API token: set DIGITALOCEAN_TOKEN, or digitalocean:token with --secret",
        );
        expect(digitaloceanApiToken(undefined, { DIGITALOCEAN_ACCESS_TOKEN: "t" })).toBeDefined();
    });

    // Under mocks an error raised inside an apply escapes the test as an unhandled rejection, so the
    // version checks the components run are tested as functions.
    it("anchors version prefixes at the dot, so 1.3 does not pick 1.34", () => {
        expect(versionFilter("1.3")).toBe("1.3.");
        expect(versionFilter("1.34.")).toBe("1.34.");
        expect(versionFilter("")).toBeUndefined();
    });

    it("names the key when the prefix matches no version", () => {
        expect(() => requireVersion("", "1.99", "DigitalOcean")).toThrow('mail:clusterVersionPrefix = "1.99" matches no DigitalOcean Kubernetes version');
        expect(requireVersion("1.34.1-do.2", "1.34", "DigitalOcean")).toBe("1.34.1-do.2");
    });
});

describe("GKE target", () => {
    it("creates a zonal cluster without its default pool, and a spot pool", async () => {
        const run = await runProgram({ ...mail, clusterProvider: "gke", clusterZone: "europe-west4-b", clusterDeletionProtection: false });
        const { recorder } = run;
        const cluster = recorder.one("gcp:container/cluster:Cluster");
        expect(cluster.inputs).toMatchObject({
            location: "europe-west4-b",
            removeDefaultNodePool: true,
            deletionProtection: false,
            // The REGULAR channel's default; the newest master version (1.34.1) is only in RAPID.
            minMasterVersion: FAKE_GKE_CHANNELS.REGULAR.default,
            releaseChannel: { channel: "REGULAR" },
            datapathProvider: "ADVANCED_DATAPATH",
        });
        const pool = recorder.one("gcp:container/nodePool:NodePool");
        expect(pool.inputs).toMatchObject({ location: "europe-west4-b", nodeCount: 1, nodeConfig: { machineType: "e2-small", spot: true } });
        const kubeconfig = await run.resolve(run.outputs.kubeconfig as string);
        expect(kubeconfig.secret).toBe(true);
        const parsed = JSON.parse(kubeconfig.value);
        expect(parsed.users[0].user.exec.command).toBe("gke-gcloud-auth-plugin");
        expect(parsed.clusters[0].cluster.server).toBe("https://203.0.113.10");
    });

    it("picks a version the release channel offers for the prefix, or names the key", () => {
        const regular = { default: "1.33.5-gke.1200", latest: "1.34.0-gke.300" };
        expect(channelVersion(regular, "", "us-central1-a")).toBe("1.33.5-gke.1200");
        expect(channelVersion(regular, "1.34", "us-central1-a")).toBe("1.34.0-gke.300");
        expect(() => channelVersion(regular, "1.35", "us-central1-a")).toThrow(
            'mail:clusterVersionPrefix = "1.35" matches no version GKE\'s REGULAR channel offers in us-central1-a (default 1.33.5-gke.1200, newest 1.34.0-gke.300)',
        );
    });

    it("keeps deletion protection on by default", async () => {
        const { recorder } = await runProgram({ ...mail, clusterProvider: "gke" });
        expect(recorder.one("gcp:container/cluster:Cluster").inputs.deletionProtection).toBe(true);
    });
});

describe("existing cluster target", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mail-kubeconfig-"));
    const file = path.join(dir, "config");
    fs.writeFileSync(
        file,
        [
            "apiVersion: v1",
            "kind: Config",
            "current-context: kind-mail",
            "clusters: [{name: kind-mail, cluster: {server: 'https://127.0.0.1:6443'}}, {name: k3d, cluster: {server: 'https://127.0.0.1:6444'}}]",
            "contexts: [{name: kind-mail, context: {cluster: kind-mail, user: u}}, {name: k3d-dev, context: {cluster: k3d, user: u}}]",
            "users: [{name: u, user: {}}]",
            "",
        ].join("\n"),
    );

    it("uses the file's current context by default and creates no cloud resources", async () => {
        const run = await runProgram({ ...mail, clusterKubeconfig: file });
        const provider = run.recorder.one("pulumi:providers:kubernetes");
        expect(provider.inputs.context).toBe("kind-mail");
        expect(run.recorder.resources.filter((r) => /^(digitalocean|gcp):/.test(r.type))).toEqual([]);
        expect((await run.resolve(run.outputs.kubeconfig as string)).secret).toBe(true);
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
    });

    it("uses the configured context", async () => {
        const run = await runProgram({ ...mail, clusterKubeconfig: file, clusterKubeconfigContext: "k3d-dev" });
        expect(run.recorder.one("pulumi:providers:kubernetes").inputs.context).toBe("k3d-dev");
        expect((await run.resolve(run.outputs.clusterName as string)).value).toBe("k3d");
    });

    it("names the key when the context is not in the file", async () => {
        await expect(runProgram({ ...mail, clusterKubeconfig: file, clusterKubeconfigContext: "prod" })).rejects.toThrow(
            'mail:clusterKubeconfigContext = "prod" is not a context in ' + file + "; it has: kind-mail, k3d-dev",
        );
    });

    it("names the key when the file is missing", async () => {
        await expect(runProgram({ ...mail, clusterKubeconfig: path.join(dir, "missing") })).rejects.toThrow(
            /mail:clusterKubeconfig: cannot read kubeconfig .*missing \(ENOENT\)/,
        );
    });
});
