#!/usr/bin/env python3
"""A STAND-IN for a cloud instance's metadata service (IMDSv2), on loopback,
for the tests of `ACCORD_S3_CREDENTIALS=instance-metadata` only: the real one
lives at 169.254.169.254 on a cloud instance and cannot run here, and no test
may reach any address but loopback. It answers the three requests a client
makes (a session token, the role's name, the role's credentials) and logs
each request with whether it carried the token.

usage: imds-standin.py PORT_FILE LOG_FILE
env:   IMDS_KEY, IMDS_SECRET (the credentials to hand out), IMDS_TOKEN (a
       session token to hand out, optional), IMDS_TTL (seconds until they
       expire, default 3600), IMDS_MODE (normal | no-role | bad-json | huge |
       fail: 503 for the credentials | flaky-N: 503 for the next N), or
       IMDS_MODE_FILE naming a file that holds the mode (read every request).
       With IMDS_KEY_AS_IS=0 the n-th credentials answer's key id is IMDS_KEY
       followed by "N<n-1>" (so a client's refresh shows); by default it is
       IMDS_KEY as is.
"""
import datetime, http.server, json, os, sys

PORT_FILE, LOG = sys.argv[1], sys.argv[2]
TOKEN = "standin-session-token"
MODE_FILE = os.environ.get("IMDS_MODE_FILE")  # if set, the mode is read from it on every request
FETCHES = [0]


def mode():
    if MODE_FILE and os.path.exists(MODE_FILE):
        return open(MODE_FILE).read().strip()
    return os.environ.get("IMDS_MODE", "normal")


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def answer(self, status, body):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self):
        ok = self.headers.get("X-aws-ec2-metadata-token") == TOKEN
        with open(LOG, "a") as f:
            f.write(f"{self.command} {self.path} {'token' if ok else 'no-token'}\n")
        return ok

    def do_PUT(self):
        self.record()
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self.answer(200, TOKEN)
        else:
            self.answer(400, "bad token request")

    def do_GET(self):
        if not self.record():
            return self.answer(401, "")
        base = "/latest/meta-data/iam/security-credentials/"
        m = mode()
        if self.path == base:
            return self.answer(404 if m == "no-role" else 200, "" if m == "no-role" else "accord-backup-role\n")
        if self.path == base + "accord-backup-role":
            if m == "bad-json":
                return self.answer(200, "<html>not json</html>")
            if m == "huge":
                return self.answer(200, "x" * (1 << 20))
            if m == "fail":
                return self.answer(503, "")
            if m.startswith("flaky-") and MODE_FILE:
                n = int(m[6:])
                with open(MODE_FILE, "w") as f:
                    f.write(f"flaky-{n - 1}" if n > 1 else "normal")
                return self.answer(503, "")
            FETCHES[0] += 1
            expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(os.environ.get("IMDS_TTL", "3600")))
            doc = {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": os.environ["IMDS_KEY"] + ("" if os.environ.get("IMDS_KEY_AS_IS", "1") == "1" else f"N{FETCHES[0]}"),
                   "SecretAccessKey": os.environ["IMDS_SECRET"], "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
            if os.environ.get("IMDS_TOKEN"):
                doc["Token"] = os.environ["IMDS_TOKEN"]
            return self.answer(200, json.dumps(doc))
        self.answer(404, "")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
