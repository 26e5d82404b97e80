import { POSTFIX_LOG, renderPostfix } from "../../components/postfix/config";
import { POSTFIX_EXPORTER_LISTENER, POSTFIX_EXPORTER_PORT, postfixExporterSidecar } from "../../components/postfix/exporter";
import { Container, PodTemplate, Volume } from "../kit/cluster/objects";
import { checkPod } from "../kit/cluster/psa";
import { postfixTestSettings } from "../kit/settings";

const sidecar = postfixExporterSidecar({
    image: "mail/postfix-exporter:dev",
    imagePullPolicy: "IfNotPresent",
    queueVolume: "queue",
    queueDirectory: "/var/spool/postfix",
});
const container = sidecar.container;

test("the sidecar passes the restricted Pod Security profile, with its volumes and the queue's claim", () => {
    const pod: PodTemplate = {
        metadata: {},
        spec: {
            containers: [container as Container],
            volumes: [...(sidecar.volumes as Volume[]), { name: "queue", persistentVolumeClaim: { claimName: "queue-postfix-0" } }],
        },
    };
    expect(checkPod("restricted", pod)).toEqual([]);
});

test("it mounts the log and the queue read-only and reads the showq socket of that queue", () => {
    expect(container.volumeMounts).toEqual([
        { name: "maillog", mountPath: "/var/log/postfix", readOnly: true },
        { name: "queue", mountPath: "/var/spool/postfix", readOnly: true },
    ]);
    expect(container.args).toEqual(["--web.listen-address=:9154", "--postfix.showq_path=/var/spool/postfix/public/showq"]);
    expect(container.securityContext).toMatchObject({ runAsUser: 154, runAsGroup: 102, readOnlyRootFilesystem: true });
});

test("the Postfix container writes its log where main.cf's maillog_file points, on the shared volume", () => {
    const main = renderPostfix({ ...postfixTestSettings, logToFile: true })["main.cf"];
    const logFile = /^maillog_file = (.*)$/m.exec(main)![1];
    expect(logFile).toBe(POSTFIX_LOG.file);
    expect(sidecar.postfixMounts).toEqual([{ name: "maillog", mountPath: POSTFIX_LOG.directory }]);
    expect(logFile.startsWith(`${POSTFIX_LOG.directory}/`)).toBe(true);
    expect(sidecar.volumes).toEqual([{ name: "maillog", emptyDir: { sizeLimit: "64Mi" } }]);
});

test("the metrics port is named within Kubernetes' 15 characters", () => {
    expect(POSTFIX_EXPORTER_LISTENER).toEqual({ name: "metrics-postfix", port: POSTFIX_EXPORTER_PORT });
    expect(container.ports).toEqual([{ name: "metrics-postfix", containerPort: 9154, protocol: "TCP" }]);
});
