#!/usr/bin/env python3
"""A small SOAP 1.1 user service for the legacy-soap example, standard library only.

    python3 examples/legacy-soap/soap_service.py [PORT]      (default 8088, on 127.0.0.1)

POST /soap/users with a SOAP 1.1 envelope whose Body holds one operation of the namespace
urn:example:users:

    GetUser   <id>7</id>          the user, or a soap:Client fault for an unknown or bad id
    FindUsers <name>a</name>      the users whose name contains the text (any case)

The user 13 is unlucky: asking for it gives a soap:Server fault, as a failing backend would.
Every request is logged on stderr with its SOAPAction.
"""

import sys
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
USERS_NS = "urn:example:users"
USERS = {
    7: {"name": "Ann Lee", "email": "ann@example.com", "roles": ["admin"]},
    8: {"name": "Bo Chan", "email": "bo@example.com", "roles": ["ops", "billing"]},
    9: {"name": "Cy Anand", "email": "cy@example.com", "roles": []},
}


def envelope(body):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soap:Envelope xmlns:soap="{SOAP}">\n'
        f"  <soap:Body>\n    {body}\n  </soap:Body>\n</soap:Envelope>\n"
    )


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fault(code, message, detail=""):
    detail = f"<detail>{detail}</detail>" if detail else ""
    return envelope(
        f"<soap:Fault><faultcode>soap:{code}</faultcode>"
        f"<faultstring>{escape(message)}</faultstring>{detail}</soap:Fault>"
    )


def user_xml(uid):
    u = USERS[uid]
    roles = "".join(f"<u:role>{escape(r)}</u:role>" for r in u["roles"])
    return (
        f"<u:user><u:id>{uid}</u:id><u:name>{escape(u['name'])}</u:name>"
        f"<u:email>{escape(u['email'])}</u:email><u:roles>{roles}</u:roles></u:user>"
    )


def answer(operation):
    """The status and envelope for the Body's operation element."""
    name = operation.tag.split("}")[-1]
    field = lambda n: (operation.findtext(f"{{{USERS_NS}}}{n}") or "").strip()
    if name == "GetUser":
        raw = field("id")
        if not raw.isdigit():
            return 500, fault("Client", f"id must be a number, not {raw!r}")
        uid = int(raw)
        if uid == 13:
            return 500, fault("Server", "the user database is not answering")
        if uid not in USERS:
            return 500, fault(
                "Client",
                f"no user with id {uid}",
                f'<u:UserNotFound xmlns:u="{USERS_NS}"><u:id>{uid}</u:id></u:UserNotFound>',
            )
        return 200, envelope(
            f'<u:GetUserResponse xmlns:u="{USERS_NS}">{user_xml(uid)}</u:GetUserResponse>'
        )
    if name == "FindUsers":
        text = field("name").lower()
        found = "".join(user_xml(uid) for uid, u in USERS.items() if text in u["name"].lower())
        return 200, envelope(
            f'<u:FindUsersResponse xmlns:u="{USERS_NS}"><u:users>{found}</u:users>'
            "</u:FindUsersResponse>"
        )
    return 500, fault("Client", f"unknown operation {name}")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        data = self.rfile.read(length)
        sys.stderr.write(
            f"soap-service: {self.path} SOAPAction={self.headers.get('soapaction')} "
            f"{data.decode('utf-8', 'replace')}\n"
        )
        if self.path != "/soap/users":
            return self.send(404, "text/plain", "not found\n")
        try:
            root = ET.fromstring(data)
            body = root.find(f"{{{SOAP}}}Body")
            operation = list(body)[0] if body is not None and len(body) else None
        except ET.ParseError as e:
            return self.send(500, "text/xml; charset=utf-8", fault("Client", f"bad XML: {e}"))
        if root.tag != f"{{{SOAP}}}Envelope" or operation is None:
            return self.send(500, "text/xml; charset=utf-8", fault("Client", "not a SOAP 1.1 call"))
        status, text = answer(operation)
        self.send(status, "text/xml; charset=utf-8", text)

    def send(self, status, content_type, text):
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8088
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    sys.stderr.write(f"soap-service: listening on 127.0.0.1:{port}\n")
    sys.stderr.flush()
    server.serve_forever()
