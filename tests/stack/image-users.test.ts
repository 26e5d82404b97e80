// The users the images create and the users the pod specs run as are one contract: a uid that drifts in either place
// makes a container start as a user its files do not belong to.
import * as fs from "fs";
import * as path from "path";
import { COUCHMAIL } from "../../components/couchmail";
import { VMAIL_UID } from "../../components/dovecot/config";
import { POSTGREY_UID } from "../../components/postgrey";
import { SPAMD_UID } from "../../components/spamassassin";

/** `useradd --uid U --gid G … NAME` lines of an image's Dockerfile: name → { uid, gid }. */
function dockerfileUsers(service: string): Record<string, { uid: number; gid: number }> {
    const text = fs.readFileSync(path.join(__dirname, "../../images", service, "Dockerfile"), "utf8");
    return Object.fromEntries([...text.matchAll(/useradd[^\n]*?--uid (\d+) --gid (\d+)[^\n]*? (\S+) \\?$/gm)]
        .map((m) => [m[3], { uid: Number(m[1]), gid: Number(m[2]) }]));
}

it.each([
    ["dovecot", "vmail", VMAIL_UID],
    ["spamassassin", "spamd", SPAMD_UID],
    ["postgrey", "postgrey", POSTGREY_UID],
    ["couchmail", "couchmail", COUCHMAIL.uid],
])("images/%s creates %s with the uid and gid the program uses (%d)", (service, user, uid) => {
    expect(dockerfileUsers(service)[user]).toEqual({ uid, gid: uid });
});
