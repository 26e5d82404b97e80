#!/usr/bin/python3
"""Real clients for the e2e suite (Python's imaplib and python3-dkim), one JSON line out.

  clients.py imap-find HOST PORT CAFILE SNI USER PASSWORD TEXT   where a message whose headers contain TEXT is
                                                                   (INBOX, then every folder) and its headers
  clients.py imap-list HOST PORT CAFILE SNI USER PASSWORD         folders with their attributes
  clients.py imap-hold HOST PORT CAFILE SNI USER PASSWORD SECONDS a logged-in session kept open (INBOX selected)
  clients.py dkim-verify DNS_IP MESSAGE_FILE                      python3-dkim's verdict; keys looked up in the
                                                                   test DNS server (the program's dnsZone records)
  clients.py smtp-utf8 HOST PORT FROM TO SUBJECT                  one SMTPUTF8 transaction (UTF-8 sender and
                                                                   headers) as an MTA sends it; the server's replies
"""
import imaplib
import json
import smtplib
import ssl
import sys
import time

import dkim
import dns.message
import dns.query
import dns.rdatatype


def imap(host, port, cafile, sni, user, password):
    ctx = ssl.create_default_context(cafile=cafile)
    conn = imaplib.IMAP4(host, int(port))
    # STARTTLS on 143 with the certificate checked against the mail host name, as a real client does.
    typ, _ = conn._simple_command("STARTTLS")
    if typ != "OK":
        raise SystemExit("STARTTLS refused")
    conn.sock = ctx.wrap_socket(conn.sock, server_hostname=sni)
    conn.file = conn.sock.makefile("rb")
    conn._tls_established = True
    conn.login(user, password)
    return conn


def folders(conn):
    out = []
    for line in conn.list()[1]:
        text = line.decode()
        attrs = text[text.index("(") + 1:text.index(")")].split()
        name = text.rsplit(" ", 1)[1].strip('"')
        out.append({"name": name, "attributes": attrs})
    return out


def main():
    cmd = sys.argv[1]
    if cmd == "dkim-verify":
        dns_ip, path = sys.argv[2:4]

        def dnsfunc(name, timeout=5):
            q = dns.message.make_query(name.decode() if isinstance(name, bytes) else name, dns.rdatatype.TXT)
            r = dns.query.udp(q, dns_ip, timeout=timeout)
            for rrset in r.answer:
                for rd in rrset:
                    return b"".join(rd.strings)
            return None

        msg = open(path, "rb").read()
        print(json.dumps({"verified": bool(dkim.verify(msg, dnsfunc=dnsfunc))}))
        return
    if cmd == "smtp-utf8":
        host, port, sender, rcpt, subject = sys.argv[2:7]
        msg = ("From: Jörg Müller <%s>\r\nTo: <%s>\r\nSubject: %s — grüße\r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nbody of %s: ça va?\r\n"
               % (sender, rcpt, subject, subject)).encode("utf-8")
        with smtplib.SMTP(host, int(port), local_hostname="mx.external.test", timeout=30) as s:
            s.ehlo()
            offered = s.has_extn("smtputf8")
            code, reply = s.mail(sender, ["SMTPUTF8", "BODY=8BITMIME"])
            if code == 250:
                code, reply = s.rcpt(rcpt)
            if code == 250:
                code, reply = s.data(msg)
        print(json.dumps({"offered": offered, "code": code, "reply": reply.decode("utf-8", "replace")}))
        return
    host, port, cafile, sni, user, password = sys.argv[2:8]
    try:
        conn = imap(host, port, cafile, sni, user, password)
    except imaplib.IMAP4.error as e:
        print(json.dumps({"login": False, "error": str(e)}))
        return
    if cmd == "imap-hold":
        conn.select("INBOX")
        print(json.dumps({"login": True}), flush=True)
        time.sleep(float(sys.argv[8]))
    elif cmd == "imap-list":
        print(json.dumps({"login": True, "folders": folders(conn)}))
    elif cmd == "imap-find":
        text = sys.argv[8]
        for f in ["INBOX"] + [f["name"] for f in folders(conn) if f["name"] != "INBOX"]:
            conn.select('"%s"' % f, readonly=True)
            typ, data = conn.search(None, "ALL")
            for num in data[0].split():
                hdr = conn.fetch(num, "(BODY.PEEK[HEADER])")[1][0][1].decode("utf-8", "replace")
                if text in hdr:
                    print(json.dumps({"login": True, "folder": f, "headers": hdr}))
                    return
        print(json.dumps({"login": True, "folder": None}))
    conn.logout()


main()
