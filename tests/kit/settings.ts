// Renderer settings for tests that render one daemon on its own: each daemon's own defaults plus what the stack plan
// would wire in, with the optional services (spam scanning, greylisting, PROXY, relay) off. Tests override fields.
import { COUCHMAIL } from "../../components/couchmail";
import { DOVECOT_DEFAULTS, DOVECOT_LISTENERS, DovecotSettings } from "../../components/dovecot/config";
import { OPENDKIM_DEFAULTS, OPENDKIM_LISTENERS, OpenDkimSettings } from "../../components/opendkim/config";
import { POSTFIX_DEFAULTS, PostfixSettings } from "../../components/postfix/config";
import { POSTGREY_DEFAULTS, PostgreySettings } from "../../components/postgrey/config";
import { SPAMASSASSIN_DEFAULTS, SpamAssassinSettings } from "../../components/spamassassin/config";

export const postfixTestSettings: PostfixSettings = {
    ...POSTFIX_DEFAULTS,
    hostname: "mail.example.test",
    ownDomains: ["example.test"],
    postmaster: "postmaster@example.test",
    socketmap: `inet:couchmail:${COUCHMAIL.socketmapPort}`,
    dnsbls: ["zen.spamhaus.org=127.0.0.[2..11]*3", "bl.spamcop.net=127.0.0.2*2", "list.dnswl.org=127.0.[0..255].[1..3]*-2"],
    saslEndpoint: `inet:dovecot:${DOVECOT_LISTENERS.authSasl.port}`,
    lmtpEndpoint: `inet:dovecot:${DOVECOT_LISTENERS.lmtp.port}`,
    milters: [`inet:opendkim:${OPENDKIM_LISTENERS.milter.port}`],
    proxyProtocol: false,
    messageSizeLimit: 26214400,
    mainCfOverrides: {},
};

export const dovecotTestSettings: DovecotSettings = {
    ...DOVECOT_DEFAULTS,
    hostname: "mail.example.test",
    luaFile: `${COUCHMAIL.luaMountDir}/${COUCHMAIL.luaFile}`,
    couchmailUrl: `http://127.0.0.1:${COUCHMAIL.httpPort}`,
    dictSocket: COUCHMAIL.dictSocket,
    junkAutoexpunge: "30d",
    maxUserIpConnections: 50,
    proxyProtocol: false,
    haproxyTrustedNetworks: [],
    spamToJunk: false,
};

export const opendkimTestSettings: OpenDkimSettings = { ...OPENDKIM_DEFAULTS, domains: ["example.test"], authservId: "mail.example.test", selector: "mail" };

export const postgreyTestSettings: PostgreySettings = { ...POSTGREY_DEFAULTS, delaySeconds: 300, whitelistClients: [], whitelistRecipients: [] };

export const spamassassinTestSettings: SpamAssassinSettings = { ...SPAMASSASSIN_DEFAULTS, requiredScore: 5, clusterNetworks: ["10.0.0.0/8"], maxChildren: 2 };
