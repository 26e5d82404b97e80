#!/usr/bin/python3
"""The e2e stack's pseudo-internet, run in its own network namespace on the private bridge:

* an authoritative DNS server (UDP and TCP 53, on DNS_IP: the address pods know as the cluster DNS) for the zone file it is given — the program's own dnsZone output
  (MX, SPF, DKIM, DMARC of our domains) plus the records the runner adds (our host, the external test domain);
  every other name is NXDOMAIN, so nothing is ever asked of a real resolver;
* an "external" MX: a minimal SMTP server on port 25 (on SMTP_IP, an internet address) that stores each message it
  accepts as a .eml file.

usage: outside.py SMTP_IP DNS_IP ZONE_FILE MAIL_DIR
       outside.py dns IP PORT ZONE_FILE    the DNS server alone (the doctor's suite serves a deliberately broken
                                           copy of the zone with it, next to the real one)
"""
import os
import socket
import socketserver
import sys
import threading
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

if sys.argv[1] == "dns":
    dns_ip, dns_port, zone_file = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    ip = mail_dir = None
else:
    ip, dns_ip, zone_file, mail_dir = sys.argv[1:5]
    dns_port = 53
zone = dns.zone.from_file(zone_file, origin=".", relativize=False, check_origin=False)


def answer(wire):
    q = dns.message.from_wire(wire)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    for question in q.question:
        node = zone.get_node(question.name)
        if node is None:
            r.set_rcode(dns.rcode.NXDOMAIN)
            continue
        rds = node.get_rdataset(dns.rdataclass.IN, question.rdtype)
        if rds is not None:
            r.answer.append(dns.rrset.from_rdata_list(question.name, rds.ttl, list(rds)))
    return r.to_wire()


class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(answer(data), self.client_address)


class Tcp(socketserver.StreamRequestHandler):
    def handle(self):
        n = int.from_bytes(self.rfile.read(2), "big")
        out = answer(self.rfile.read(n))
        self.wfile.write(len(out).to_bytes(2, "big") + out)


class Smtp(socketserver.StreamRequestHandler):
    def say(self, line):
        self.wfile.write((line + "\r\n").encode())

    def handle(self):
        self.say("220 mx.external.test ESMTP e2e sink")
        sender, rcpts = None, []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").strip()
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.say("250-mx.external.test" if verb == "EHLO" else "250 mx.external.test")
                if verb == "EHLO":
                    self.say("250 8BITMIME")
            elif verb == "MAIL":
                sender, rcpts = cmd[10:].strip(), []
                self.say("250 ok")
            elif verb == "RCPT":
                rcpts.append(cmd[8:].strip())
                self.say("250 ok")
            elif verb == "DATA":
                self.say("354 go ahead")
                body = []
                while True:
                    line = self.rfile.readline()
                    if not line or line in (b".\r\n", b".\n"):
                        break
                    body.append(line[1:] if line.startswith(b"..") else line)
                name = os.path.join(mail_dir, "%d-%d.eml" % (time.time_ns(), os.getpid()))
                with open(name + ".tmp", "wb") as f:
                    f.write(b"X-Sink-Envelope: %s -> %s\r\n" % (sender.encode(), " ".join(rcpts).encode()))
                    f.write(b"".join(body))
                os.rename(name + ".tmp", name)
                self.say("250 queued as %s" % os.path.basename(name))
            elif verb == "QUIT":
                self.say("221 bye")
                return
            elif verb in ("RSET", "NOOP"):
                self.say("250 ok")
            else:
                self.say("502 not implemented")


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


class UdpServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True


servers = [UdpServer((dns_ip, dns_port), Udp), Server((dns_ip, dns_port), Tcp)]
if mail_dir:
    os.makedirs(mail_dir, exist_ok=True)
    servers.append(Server((ip, 25), Smtp))
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()
sink = ", SMTP sink on %s:25 -> %s" % (ip, mail_dir) if mail_dir else ""
print("outside: DNS on %s:%d (%d names)%s" % (dns_ip, dns_port, len(zone.nodes), sink), flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    pass
