// Dovecot's /tmp is an emptyDir with a sizeLimit: the kubelet evicts the pod when it is exceeded, so the deliveries
// Postfix may run at once, each spooled and copied for spam scanning, must fit.
import { parseQuantity } from "../kit/cluster/quantity";
import { kubernetesObjects, unwrapSecrets } from "../kit/k8s-schema";
import { runProgram } from "../kit/program";

/* eslint-disable @typescript-eslint/no-explicit-any -- objects as declared */
it.each([26214400, 52428800])("Dovecot's temp space holds every concurrent delivery of %d-byte messages twice", async (size) => {
    const run = await runProgram({
        clusterProvider: "digitalocean",
        mailHostname: "mail.example.com",
        mailDomains: ["example.com"],
        postfixMessageSizeLimit: size,
    });
    const objects = kubernetesObjects(run.recorder.resources).map((r) => unwrapSecrets(r.inputs) as any);
    const mainCf: string = objects.find((o) => o.metadata.name === "postfix-config").data["main.cf"];
    const param = (name: string) => Number(new RegExp(`^${name} = (\\d+)$`, "m").exec(mainCf)![1]);
    const dovecot = objects.find((o) => o.metadata.name === "dovecot" && o.spec?.template);
    const tmp = dovecot.spec.template.spec.volumes.find((v: any) => v.name === "tmp");
    expect(param("message_size_limit")).toBe(size);
    expect(parseQuantity(tmp.emptyDir.sizeLimit)).toBeGreaterThanOrEqual(2 * size * param("lmtp_destination_concurrency_limit"));
});
