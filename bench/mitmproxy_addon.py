"""cordon-bench's addon for mitmdump: makes mitmproxy a credential-injecting
proxy like the other subjects.

Every upstream connection goes to CORDON_BENCH_UPSTREAM (host:port), which
stands in for DNS since the benchmark's host names exist nowhere else; the
TLS server name stays the one the client asked for, so the upstream's
certificate is still verified against it. Requests to hosts under
CORDON_BENCH_SUFFIX get "Authorization: Bearer $CORDON_BENCH_SECRET".
"""

import os

UPSTREAM_HOST, _, UPSTREAM_PORT = os.environ["CORDON_BENCH_UPSTREAM"].rpartition(":")
SUFFIX = os.environ["CORDON_BENCH_SUFFIX"].lstrip(".").lower()
SECRET = os.environ["CORDON_BENCH_SECRET"]


class BenchUpstream:
    def server_connect(self, data):
        server = data.server
        if server.address and not server.sni:
            server.sni = server.address[0]
        server.address = (UPSTREAM_HOST, int(UPSTREAM_PORT))

    def requestheaders(self, flow):
        host = flow.request.pretty_host.lower()
        if host == SUFFIX or host.endswith("." + SUFFIX):
            flow.request.headers["Authorization"] = "Bearer " + SECRET


addons = [BenchUpstream()]
