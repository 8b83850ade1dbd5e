"""A disk's source in a misbehaving world, against the real host: an HTTP server on the container's
loopback that never ends, drips, announces more than the disk holds, serves a decompression bomb,
redirects to another scheme, sets a Content-Encoding, or refuses a URL with credentials; and the
module SIGKILLed on the host mid-download. Each case ends in bounded time, is refused naming the
guest's disk and the fix (or succeeds), leaves /mnt/vm as it was, and no secret reaches the output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import disk_source_spec as spec
from conftest import run_site, site_command

V = "virsh -c qemu:///system "
PORT = 18090
SERVER = "/usr/local/bin/kvmlab-misbehaving-server"
SECRET = "s3cr3t-Pa55"

# Runs on the test host: one path per misbehaviour.
SERVER_CODE = r'''#!/usr/bin/python3
import gzip, http.server, lzma, subprocess, sys, time
subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "/run/kvmlab-ok.qcow2", "16M"], check=True)
OK = open("/run/kvmlab-ok.qcow2", "rb").read()
GZ = gzip.compress(OK)
BOMB = lzma.compress(b"\0" * (256 << 20), preset=0)

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def head(self, code=200, **fields):
        self.send_response(code)
        for k, v in fields.items():
            self.send_header(k.replace("_", "-"), str(v))
        self.end_headers()

    def do_GET(self):
        p = self.path
        try:
            if p == "/endless.qcow2":
                self.head(Connection="close")
                while True:
                    self.wfile.write(b"\0" * (1 << 20))
            elif p == "/drip.qcow2":
                self.head(Connection="close")
                while True:
                    self.wfile.write(b"x"); self.wfile.flush(); time.sleep(0.5)
            elif p == "/huge.qcow2":
                self.head(Content_Length=10 << 30)
                self.wfile.write(b"x" * 4096)
            elif p == "/bomb.qcow2.xz":
                self.head(Content_Length=len(BOMB)); self.wfile.write(BOMB)
            elif p == "/to-ftp.qcow2":
                self.head(302, Location="ftp://127.0.0.1/x.qcow2", Content_Length=0)
            elif p == "/encoded.qcow2.gz":
                self.head(Content_Encoding="gzip", Content_Length=len(GZ)); self.wfile.write(GZ)
            elif p == "/ok.qcow2":
                self.head(Content_Length=len(OK)); self.wfile.write(OK)
            else:
                self.head(403, Content_Length=0)
        except OSError:
            pass

    def log_message(self, *a):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


@pytest.fixture(scope="module")
def server(host):
    host.run_test("cat > %s <<'PYEOF'\n%sPYEOF\nchmod 0755 %s" % (SERVER, SERVER_CODE, SERVER))
    host.run_test("systemd-run --unit kvmlab-misbehaving-server %s %d" % (SERVER, PORT))
    host.run_test("for i in $(seq 100); do python3 -c 'import urllib.request; urllib.request.urlopen("
                  "\"http://127.0.0.1:%d/ok.qcow2\")' 2>/dev/null && exit 0; sleep 0.2; done; exit 1" % PORT)
    yield {"ok": "sha256:" + host.check_output("sha256sum /run/kvmlab-ok.qcow2 | cut -d' ' -f1")}
    host.run("systemctl stop kvmlab-misbehaving-server; rm -f %s /run/kvmlab-ok.qcow2" % SERVER)


def url(path: str, auth: str = "") -> str:
    return "http://%s127.0.0.1:%d/%s" % (auth, PORT, path)


def flat(run) -> str:
    """The run's output with the YAML callback's line wrapping undone."""
    return " ".join((run.stdout + run.stderr).split())


def listing(host) -> str:
    return host.check_output("ls -a /mnt/vm")


CASES = [
    ("endless.qcow2", {}, r"more than the disk's size allows"),
    ("drip.qcow2", {"timeout": 5, "deadline": 8}, r"did not finish within the source's deadline of 8 seconds"),
    ("huge.qcow2", {}, r"is 10737418240 bytes or more, more than the disk's size allows"),
    ("bomb.qcow2.xz", {}, None),  # checksum filled in below: the bomb itself is genuine
    ("to-ftp.qcow2", {}, r"redirects to ftp://127\.0\.0\.1/x\.qcow2, which is not http or https"),
]


@pytest.mark.usefixtures("server")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_misbehaving_server_is_refused_in_bounded_time(host, guest, name, summary, case):
    path, extra, message = case
    checksum = "sha256:" + "0" * 64
    if path == "bomb.qcow2.xz":
        checksum = "sha256:" + host.check_output(
            "python3 -c 'import urllib.request,hashlib; print(hashlib.sha256(urllib.request.urlopen("
            "\"%s\").read()).hexdigest())'" % url(path))
        message = r"the xz download, decompressed, is \d+ bytes or more, more than the disk's size allows"
    before = listing(host)
    started = time.monotonic()
    run = guest(spec(name, dict({"url": url(path), "checksum": checksum}, **extra)))
    seconds = time.monotonic() - started
    assert run.rc != 0, run
    assert re.search(message, flat(run)), run
    assert "volumes[vm/%s.qcow2].source" % name in flat(run), run  # names the disk
    assert seconds < 120, seconds
    assert listing(host) == before  # nothing left, not even a partial file
    assert host.run(V + "vol-info --pool vm %s.qcow2" % name).rc != 0
    summary["misbehaving sources refused"] += 1


@pytest.mark.usefixtures("server")
def test_a_content_encoding_is_taken_as_served(host, guest, name):
    """A .qcow2.gz served with Content-Encoding: gzip: its checksum is the .gz file's, and it is
    decompressed once, by its suffix."""
    gz = "sha256:" + host.check_output(
        "python3 -c 'import http.client,hashlib; c=http.client.HTTPConnection(\"127.0.0.1\",%d); "
        "c.request(\"GET\",\"/encoded.qcow2.gz\"); print(hashlib.sha256(c.getresponse().read()).hexdigest())'" % PORT)
    run = guest(spec(name, {"url": url("encoded.qcow2.gz"), "checksum": gz}))
    assert run.rc == 0, run
    info = host.check_output("qemu-img info --output=json /mnt/vm/%s.qcow2" % name)
    assert '"virtual-size": %d' % (64 << 20) in info


def test_credentials_in_the_url_never_reach_the_output(host, guest, server, name):
    source = {"url": url("private/ok.qcow2", auth="tim:%s@" % SECRET), "checksum": server["ok"]}
    for extra in (("--check", "--diff"), ("--diff", "-vvv")):
        run = guest(spec(name, source), *extra)
        out = flat(run)
        assert SECRET not in run.stdout + run.stderr, out[-3000:]
        if "--check" not in extra:
            assert run.rc != 0 and "403" in out and "***@127.0.0.1" in out, run
    # The site gathers its guests' specs (kvmlab_guests, the VM roles) before resolving them.
    run = run_site("--check", "-vvv", "-e", json.dumps({"kvmlab_guests": [spec(name, source)]}))
    assert run.rc == 0 and SECRET not in run.stdout + run.stderr, flat(run)[-3000:]


def test_a_module_killed_mid_download_leaves_a_part_the_next_run_removes(host, guest, server, name):
    drip = spec(name, {"url": url("drip.qcow2"), "checksum": "sha256:" + "0" * 64, "deadline": 600})
    command, env = site_command("-e", json.dumps({"kvmlab_guests": [drip]}),
                                playbook_path=str(Path(__file__).parents[1] / "guest.yml"))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while host.run("ls -a /mnt/vm | grep -F '.%s.qcow2.' | grep -q '[.]download[.]part$'" % name).rc != 0:
            assert time.monotonic() < deadline and proc.poll() is None, "the download never started"
            time.sleep(1)
        # SIGKILL the module itself on the host, as a crash would: the process that has the
        # partial file open.
        part = host.check_output("ls -a /mnt/vm | grep -F '.%s.qcow2.' | grep '[.]download[.]part$'" % name)
        pids = host.check_output("for p in /proc/[0-9]*; do ls -l $p/fd 2>/dev/null | grep -q -F %s && "
                                 "echo ${p#/proc/}; done; true" % ("/mnt/vm/" + part)).split()
        assert pids, "no process holds %s" % part
        host.run_test("kill -KILL %s" % " ".join(pids))
        out = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert proc.returncode != 0, out
    parts = host.check_output("ls -a /mnt/vm | grep -F '.%s.qcow2.' || true" % name).split()
    assert len(parts) == 1 and parts[0].endswith(".download.part"), parts  # left behind by the crash

    check = guest(spec(name, {"url": url("ok.qcow2"), "checksum": server["ok"]}), "--check", "--diff")
    assert check.rc == 0 and "would remove the partial files" in flat(check) and parts[0] in flat(check), check
    assert host.file("/mnt/vm/" + parts[0]).exists  # check mode removes nothing
    run = guest(spec(name, {"url": url("ok.qcow2"), "checksum": server["ok"]}))
    assert run.rc == 0 and "removed the partial files" in flat(run), run
    assert host.check_output("ls -a /mnt/vm | grep -F '.%s.qcow2.' || true" % name) == ""
    assert host.file("/mnt/vm/%s.qcow2" % name).exists
    again = guest(spec(name, {"url": url("ok.qcow2"), "checksum": server["ok"]}))
    assert again.rc == 0 and again.changed == 0, again
