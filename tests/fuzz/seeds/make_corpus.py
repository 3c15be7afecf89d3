#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ from the examples
below (taken from the API contract: shared/design/api-v1.md and
docs/openapi.json, plus the edge cases the unit and black-box tests use).
File names are content hashes, as libFuzzer names its entries. Run it again
after editing the examples: `python3 tests/fuzz/seeds/make_corpus.py`."""

import hashlib
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
corpus = os.path.join(os.path.dirname(here), "corpus")

ADMIN = "authorization: Bearer fuzz-admin-token"
READER = "authorization: Bearer fuzz-reader-token"
JSON = "content-type: application/json"


def b(s):
    return s if isinstance(s, bytes) else s.encode()


def j(v):
    return json.dumps(v)


# query_string: one byte = the route's key set (fuzz_support::ROUTE_QUERY_KEYS:
# 0 none, 1 filters, 2 history, 3 notifications, 4 stream, 5 plugins, 6 time).
query_string = [
    b"\x00",
    b"\x00verbose=1",
    b"\x01host=web1&plugin=cpu",
    b"\x01plugin_instance=0&type=cpu&type_instance=idle",
    b"\x01host=a%20b+c&type=%C3%A9",
    b"\x01host=web%2F1&plugin=",
    b"\x01plugn=cpu",
    b"\x01plugin=a&plugin=b",
    b"\x01plugin=%ff",
    b"\x01plugin=%zz&host=%4",
    b"\x02since=42&limit=100",
    b"\x02since=&limit=1",
    b"\x02limit=1000001",
    b"\x03since=0&severity=warning&plugin=df&limit=10",
    b"\x03severity=fatal&limit=-1",
    b"\x03since=18446744073709551615",
    b"\x04severity=failure&plugin=cpu&since=3",
    b"\x05state=enabled",
    b"\x05state=available",
    b"\x06t0=1718000000.1",
    b"\x06t0=nan",
]

# identifier: identifiers, names, and NUL-separated field quintuples.
identifier = [
    "web1/cpu-0/cpu-idle",
    "h/df-root-fs/df_complex-free",
    "host.example/load/load",
    "a-b/p-q/t-x-y",
    "h/p-/t-",
    "h/p/t/x",
    "h//t",
    "/p/t",
    "h/-x/t",
    "cpu",
    "write_prometheus",
    "python.foo",
    "no-eth.1_x",
    "..",
    "-x",
    "h\x00cpu\x000\x00cpu\x00idle",
    "\u00e9/\u00e9-\u00e9/\u00e9",
    "h" * 128 + "/p/t",
    "\u00e9" * 70 + "\x00p",
]

# blacklist_rule: bodies of PUT /v1/blacklist/{id}.
blacklist_rule = [
    j({"id": "no-loopback", "plugin": "interface", "plugin_instance": "/^(lo|docker)/"}),
    j({"plugin": "cpu", "type_instance": "idle"}),
    j({"host": "/web/"}),
    j({"host": "h", "plugin": "p", "plugin_instance": "pi", "type": "t", "type_instance": "ti"}),
    j({"type": "/(unclosed/"}),
    j({"plugin": "/"}),
    j({"plugin": "//"}),
    j({"type_instance": "/\\d{2,}$/"}),
    j({"plugin": "/(?i)ETH[0-9]+$/", "type": "if_octets"}),
    j({"plugin": "x", "bogus": 1}),
    j({}),
    j({"id": "a/b", "plugin": "memory"}),
    '{"plugin": "cpu",}',
    '{"plugin": 1}',
]

# blacklist_regex: pattern NUL subject.
blacklist_regex = [
    b"^(eth|ens)\x00eth0",
    b"web\x00my-web-1",
    b"(unclosed\x00x",
    b"\\d{2,}\x00123",
    b"(?i)^ETH[0-9]+$\x00eth1",
    b"a{1000}{1000}\x00a",
    b"[[:alpha:]]+\x00abc",
    b"\\p{Greek}+\x00\xce\xb1\xce\xb2",
    b"^$\x00",
    b"(a|b)*c\x00ababc",
    b".{0,1000}x\x00y",
    b"\\bcpu\\b\x00cpu-0",
    b"(?x) a b # comment\x00ab",
]

# threshold: bodies of PUT /v1/thresholds/{id}.
threshold = [
    j({"id": "root-full", "host": "web-1", "plugin": "df", "plugin_instance": "root",
       "type": "percent_bytes", "type_instance": "used", "warning_max": 80,
       "failure_max": 95, "invert": False, "percentage": False, "persist": False,
       "persist_ok": False, "hits": 3, "hysteresis": 1}),
    j({"type": "load", "data_source": "shortterm", "warning_max": 2, "failure_max": 4}),
    j({"type": "cpu", "plugin": "cpu", "warning_min": 10, "invert": True, "percentage": True}),
    j({"type": "gauge", "warning_max": 10, "failure_max": 20, "persist": True, "persist_ok": True}),
    j({"type": "gauge", "warning_min": 1, "warning_max": 5, "failure_min": 0, "failure_max": 9}),
    j({"type": "x", "warning_min": 5, "warning_max": 1}),
    j({"type": "x", "failure_max": 1e308, "hysteresis": 1e308}),
    j({"type": "x", "warning_max": 0.1, "hits": 1000000}),
    j({"type": "x", "warning_max": 1, "hits": 0}),
    j({"type": "x", "plugin_instance": "a", "warning_max": 1}),
    j({"type": ""}),
    j({"type": "x"}),
    '{"type": "x", "warning_max": 1e999}',
    '{"type": "x", "warning_max": -0.0, "hysteresis": 5e-324}',
]

# plugin_put: one byte = the plugin (fuzz_support::INSTALLED, then "nope",
# "a/b": 0 cpu, 1 df, 2 interface, 3 load, 4 memory, 5 rest, 6 nope, 7 a/b),
# then the body.
plugin_put = [
    b"\x02" + b(j({"config": "Interface \"lo\"\nIgnoreSelected true", "interval": 10})),
    b"\x00" + b(j({"interval": 2.5})),
    b"\x00" + b(j({"config": "ReportByCpu true", "enabled": False})),
    b"\x04" + b(j({"enabled": False})),
    b"\x04",
    b"\x01{}",
    b"\x05" + b(j({"interval": 10})),
    b"\x06{}",
    b"\x07{}",
    b"\x00" + b(j({"config": "</Plugin>\nWriteThreads 8\n<Plugin \"cpu\">"})),
    b"\x00" + b(j({"config": "<Deep>\n Include \"/etc/passwd\"\n</Deep>"})),
    b"\x02" + b(j({"config": "LoadPlugin \"csv\""})),
    b"\x00" + b(j({"interval": 0})),
    b"\x00" + b(j({"interval": 86401})),
    b"\x00" + b(j({"config": "a\u0000b"})),
    b"\x03" + b(j({"config": "ReportRelative true", "enabled": True, "interval": 86400})),
]

# runtime_config: one byte = the plugin name (cpu, interface,
# write_prometheus, a-b), then the text.
runtime_config = [
    b"\x01Interface \"lo\"\nIgnoreSelected true",
    b"\x00ReportByCpu true\nValuesPercentage true",
    b"\x02Port \"9103\"\nHost \"::\"",
    b"\x00</Plugin>\nWriteThreads 8\n<Plugin \"cpu\">",
    b"\x00<Deep>\n  Include \"/etc/passwd\"\n</Deep>",
    b"\x00LoadPlugin csv",
    b"\x00include \"/x\"",
    b"\x01<Interface \"eth0\">\n  Foo 1\n</Interface>",
    b"\x00# comment only",
    b"\x00Key \"multi\\\n   line\"",
    b"\x00Server 127.0.0.1:80 0x1F -3 2.5e+3 on off",
    b"\x00</Foo>",
    b"\x03Key \"unterminated",
    b"\x00<Plugin cpu>\n</Plugin>",
]


def req(method_target, headers=(), body=""):
    return "\n".join([method_target, *headers]) + "\n\n" + body


A = (ADMIN, JSON)
http_request = [
    req("GET /v1/health"),
    req("GET /v1/health?verbose=1"),
    req("GET /v1/capabilities", (READER,)),
    req("GET /v1/openapi.json", (ADMIN,)),
    req("GET /v1/time?t0=1718000000.1", (READER,)),
    req("GET /v1/metrics?plugin=cpu", ("x-auth-token: fuzz-reader-token",)),
    req("GET /v1/values?host=fuzz-host&plugin=load", (READER,)),
    req("GET /v1/values/fuzz-host/cpu-0/cpu-idle", (READER,)),
    req("GET /v1/values/fuzz-host/load/load", (READER,)),
    req("GET /v1/values/a%2Fb/p/t", (READER,)),
    req("GET /v1/history?since=2&limit=10&plugin=cpu", (READER,)),
    req("GET /v1/notifications?since=0&severity=warning&plugin=df&limit=10", (READER,)),
    req("GET /v1/notifications/stream?severity=okay", (READER, "last-event-id: 0")),
    req("GET /metrics?plugin=load", (READER,)),
    req("POST /v1/notifications", A,
        j({"severity": "warning", "message": "disk almost full", "plugin": "df"})),
    req("POST /v1/notifications", A,
        j({"severity": "okay", "message": "m", "host": "h", "plugin": "p",
           "plugin_instance": "pi", "type": "t", "type_instance": "ti"})),
    req("POST /v1/flush", A, j({"plugins": ["rrdtool"], "timeout": 0})),
    req("POST /v1/flush", A, j({"plugins": ["cpu", "python.x"],
                                "identifiers": ["fuzz-host/load/load"], "timeout": 2.5})),
    req("POST /v1/flush", (ADMIN,)),
    req("GET /v1/blacklist", (READER,)),
    req("PUT /v1/blacklist/no-loopback", A,
        j({"id": "no-loopback", "plugin": "interface", "plugin_instance": "/^(lo|docker)/"})),
    req("PUT /v1/blacklist/other", A, j({"id": "no-loopback", "plugin": "cpu"})),
    req("DELETE /v1/blacklist/no-loopback", (ADMIN,)),
    req("GET /v1/thresholds", (READER,)),
    req("PUT /v1/thresholds/root-full", A,
        j({"host": "web-1", "plugin": "df", "plugin_instance": "root", "type": "percent_bytes",
           "type_instance": "used", "warning_max": 80, "failure_max": 95, "hits": 3,
           "hysteresis": 1})),
    req("DELETE /v1/thresholds/x", (ADMIN,)),
    req("GET /v1/plugins?state=enabled", (READER,)),
    req("GET /v1/plugins/cpu", (READER,)),
    req("PUT /v1/plugins/interface", A,
        j({"config": "Interface \"lo\"\nIgnoreSelected true", "interval": 10})),
    req("PUT /v1/plugins/df", A, j({})),
    req("DELETE /v1/plugins/cpu", (ADMIN,)),
    req("POST /v1/plugins/cpu/disable", (ADMIN,)),
    req("POST /v1/plugins/memory/enable", (ADMIN,)),
    req("POST /v1/plugins/load/restart", (ADMIN,)),
    req("POST /v1/plugins/rest/disable", (ADMIN,)),
    req("GET /v1/nope", (READER,)),
    req("PATCH /v1/flush", (ADMIN,)),
    req("GET /v1/values"),
    req("POST /v1/flush", (READER, JSON), "{}"),
    req("POST /v1/notifications", (ADMIN, "content-type: text/plain"), "{}"),
    req("POST /v1/notifications", A, '{"severity": "warning", "message": '),
    req("GET /v1/values", ("authorization: Basic eDp5",)),
]

targets = {
    "query_string": query_string,
    "identifier": identifier,
    "blacklist_rule": blacklist_rule,
    "blacklist_regex": blacklist_regex,
    "threshold": threshold,
    "plugin_put": plugin_put,
    "runtime_config": runtime_config,
    "http_request": http_request,
}

only = sys.argv[1:]
for name, seeds in targets.items():
    if only and name not in only:
        continue
    d = os.path.join(corpus, name)
    os.makedirs(d, exist_ok=True)
    for s in seeds:
        data = b(s)
        with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)
    print(f"{name}: {len(seeds)} seeds")
