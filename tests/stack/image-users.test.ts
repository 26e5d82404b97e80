// The users the images create and the users the pod specs run as are one contract: a uid that drifts in either place
// makes a container start as a user its files do not belong to.
import { COUCHMAIL } from "../../components/couchmail";
import { VMAIL_UID } from "../../components/dovecot/config";
import { POSTGREY_UID } from "../../components/postgrey";
import { SPAMD_UID } from "../../components/spamassassin";
import { imageUsers } from "../kit/images";

it.each([
    ["dovecot", "vmail", VMAIL_UID],
    ["spamassassin", "spamd", SPAMD_UID],
    ["postgrey", "postgrey", POSTGREY_UID],
    ["couchmail", "couchmail", COUCHMAIL.uid],
])("images/%s creates %s with the uid and gid the program uses (%d)", (service, user, uid) => {
    expect(imageUsers(service).find((u) => u.name === user)).toEqual({ name: user, uid, gid: uid });
});
