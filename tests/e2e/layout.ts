// Where the e2e cluster lives on this machine: its state folder, the kubelet's socket, the private bridge and
// the fixed addresses outside the pods (the pseudo-internet, the cluster DNS).
import * as path from "path";

export const REPO = path.resolve(__dirname, "../..");
export const E2E_DIR = path.join(REPO, ".e2e");
export const KUBELET_SOCKET = path.join(E2E_DIR, "kubelet.sock");
export const STATUS_FILE = path.join(E2E_DIR, "status.json");
/** The Job controller's status of the Jobs the node ran (jobcontroller.ts JobStatus, by Job name). */
export const JOBS_FILE = path.join(E2E_DIR, "jobs.json");
/** The private bridge: no uplink, no NAT, no default route in any pod — traffic cannot leave this machine. */
export const BRIDGE = { name: "mail-e2e0", prefix: "10.77.0", hostIp: "10.77.0.1" };
/** The pseudo-internet: the external MX sink and the address the suite's clients connect from (outside.py). */
export const OUTSIDE = { name: "outside", ip: `${BRIDGE.prefix}.2` };
/**
 * The cluster's DNS, served by outside.py on a second address of its namespace and known to NetworkPolicies as
 * CoreDNS is in a cluster: pod `kube-dns` in `kube-system`, label `k8s-app: kube-dns`, ports 53 UDP and TCP.
 */
export const CLUSTER_DNS = { ip: `${BRIDGE.prefix}.3`, namespace: "kube-system", labels: { "k8s-app": "kube-dns" } };
/** The one substitution: CouchDB's pod runs the CouchDB-protocol test server (express-pouchdb, in memory). */
export const COUCHDB_SUBSTITUTE = "couchdb";
